"""The plugin host: built-ins, entry points (group ``bridge.plugins``) and the ``plugins_dir`` folder.

Nothing happens at import time; :func:`create_host` builds a fresh manager. One broken plugin is recorded as
failed with its error and the others still load. ``BRIDGE_DISABLED_PLUGINS`` (comma separated) and
``[plugins] disabled`` block plugins by name; ``BRIDGE_TRACE_PLUGINS=1`` logs every hook call.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from bridge import hookspecs
from bridge.connector import Connector
from bridge.errors import PluginLoadError

log = logging.getLogger("bridge.plugins")

hookimpl = pluggy.HookimplMarker("bridge")
ENTRY_POINT_GROUP = "bridge.plugins"
BUILTINS = ("bridge.connectors.files",)


@dataclass
class PluginInfo:
    """What ``bridge plugins`` lists about one plugin."""

    name: str
    origin: str  # builtin | entry_point | plugins_dir
    module: str = ""
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    connectors: list[str] = field(default_factory=list)
    status: str = "ok"  # ok | failed | blocked
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "name": self.name,
            "origin": self.origin,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "hooks": self.hooks,
            "connectors": self.connectors,
            "status": self.status,
            "error": self.error,
        }


class PluginHost:
    """The pluggy manager and what was learnt while loading plugins."""

    def __init__(self, disabled: Iterable[str] = ()) -> None:
        self.pm = pluggy.PluginManager("bridge")
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.errors: list[str] = []
        self._connectors: dict[str, type[Connector]] | None = None
        blocked = {d.strip() for d in disabled if d.strip()}
        blocked |= {d.strip() for d in os.environ.get("BRIDGE_DISABLED_PLUGINS", "").split(",") if d.strip()}
        self.blocked = blocked
        for name in blocked:
            self.pm.set_blocked(name)
        if os.environ.get("BRIDGE_TRACE_PLUGINS") == "1":
            self.pm.trace.root.setwriter(lambda msg: log.info("hook: %s", msg.rstrip()))
            self.pm.enable_tracing()

    @property
    def hook(self) -> Any:
        """The hook relay (``host.hook.classify(...)``)."""
        return self.pm.hook

    def register(
        self,
        plugin: object,
        name: str,
        origin: str = "builtin",
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        """Register a plugin object (module or instance) under ``name``."""
        info = PluginInfo(name, origin, getattr(plugin, "__name__", type(plugin).__name__), distribution, version)
        self.infos[name] = info
        if name in self.blocked:
            info.status = "blocked"
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # a plugin with a bad hookimpl must not stop the others
            self._fail(info, exc)
            return
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        self._connectors = None

    def _fail(self, info: PluginInfo, exc: BaseException) -> None:
        info.status = "failed"
        info.error = f"{type(exc).__name__}: {exc}"
        self.errors.append(f"plugin {info.name} ({info.origin}): {info.error}")
        log.error("plugin %s failed to load: %s", info.name, info.error)

    def load_builtins(self) -> None:
        """Register the built-in plugins (ordinary plugins, through the same hooks)."""
        for modname in BUILTINS:
            short = modname.rsplit(".", 1)[-1]
            try:
                module = importlib.import_module(modname)
            except Exception as exc:  # pragma: no cover - a broken install
                self._fail(self.infos.setdefault(short, PluginInfo(short, "builtin", modname)), exc)
                continue
            self.register(module, short, "builtin", "bridge-sync", _version("bridge-sync"))

    def load_entry_points(self) -> None:
        """Register every plugin of the ``bridge.plugins`` entry point group, each on its own."""
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            info = PluginInfo(ep.name, "entry_point", ep.value, dist, version)
            if ep.name in self.blocked:
                info.status = "blocked"
                self.infos[ep.name] = info
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self.infos[ep.name] = info
                self._fail(info, exc)
                continue
            self.register(plugin, ep.name, "entry_point", dist, version)

    def load_dir(self, folder: str | Path | None) -> None:
        """Register every ``*.py`` module of a local plugins folder."""
        if not folder:
            return
        path = Path(folder)
        if not path.is_dir():
            return
        for file in sorted(path.glob("*.py")):
            if file.name.startswith("_"):
                continue
            name = file.stem
            info = PluginInfo(name, "plugins_dir", str(file))
            if name in self.blocked:
                info.status = "blocked"
                self.infos[name] = info
                continue
            try:
                module = _import_file(f"bridge_local_plugins.{name}", file)
            except Exception as exc:
                self.infos[name] = info
                self._fail(info, exc)
                continue
            self.register(module, name, "plugins_dir")

    def connectors(self) -> dict[str, type[Connector]]:
        """Connector classes by plugin name; a name registered twice is reported naming both plugins."""
        if self._connectors is not None:
            return self._connectors
        found: dict[str, type[Connector]] = {}
        owners: dict[str, str] = {}
        for plugin_name, info in self.infos.items():
            plugin = self.pm.get_plugin(plugin_name)
            impl = getattr(plugin, "register_connectors", None) if plugin is not None else None
            if impl is None or info.status != "ok":
                continue
            registered: list[type[Connector]] = []
            try:
                impl(register=registered.append)
            except Exception as exc:
                self._fail(info, exc)
                continue
            for cls in registered:
                if not (isinstance(cls, type) and issubclass(cls, Connector)) or not cls.name:
                    self._fail(info, PluginLoadError(f"{cls!r} is not a Connector subclass with a name"))
                    continue
                if cls.name in found:
                    msg = f"connector {cls.name!r} is registered by both {owners[cls.name]} and {plugin_name}"
                    self.errors.append(msg)
                    continue
                found[cls.name] = cls
                owners[cls.name] = plugin_name
                info.connectors.append(cls.name)
        self._connectors = found
        return found

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of a hook one by one; a raising plugin is logged, not fatal."""
        results: list[tuple[str, Any]] = []
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            try:
                args = {k: v for k, v in kwargs.items() if k in impl.argnames}
                results.append((impl.plugin_name, impl.function(**args)))
            except Exception as exc:
                log.error("plugin %s failed in %s: %s", impl.plugin_name, hook_name, exc)
                self.errors.append(f"plugin {impl.plugin_name}: {hook_name}: {type(exc).__name__}: {exc}")
        return results

    def describe(self) -> list[dict[str, Any]]:
        """Every plugin as ``bridge plugins --json`` prints it."""
        self.connectors()
        return [info.as_dict() for info in self.infos.values()]


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


def create_host(
    disabled: Iterable[str] = (),
    plugins_dir: str | Path | None = None,
    extra: Iterable[tuple[str, object]] = (),
    entry_points: bool = True,
) -> PluginHost:
    """Build a plugin host: hookspecs, built-ins, entry points, the plugins folder, then ``check_pending``."""
    host = PluginHost(disabled)
    host.load_builtins()
    if entry_points:
        host.load_entry_points()
    host.load_dir(plugins_dir)
    for name, plugin in extra:
        host.register(plugin, name, "test")
    try:
        host.pm.check_pending()
    except pluggy.PluginValidationError as exc:
        host.errors.append(f"plugin {exc.plugin}: {exc}")
    return host


Register = Callable[[type[Connector]], None]
