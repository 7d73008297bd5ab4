"""The application object: config, plugin host, store and connectors, built once per command."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from pydantic import ValidationError

from bridge.connector import Connector, ConnectorContext
from bridge.errors import ConfigError, ConnectorStartError, StoreError
from bridge.plugins import PluginHost, create_host, resolve_kinds
from bridge.settings import Config, LoadedConfig, env_text, load_config, validation_problems

if TYPE_CHECKING:
    from bridge.store import Store

log = logging.getLogger("bridge")


class App:
    """Everything a command needs, created lazily: nothing opens a database or a socket until asked."""

    def __init__(
        self, loaded: LoadedConfig, host: PluginHost | None = None, database: str | None = None
    ) -> None:
        self.loaded = loaded
        self.config: Config = loaded.config
        self._host = host
        if host is not None:
            resolve_kinds(self.config, host.connectors())
        self._database = database
        self._connectors: dict[str, Connector] = {}

    @classmethod
    def from_path(cls, path: str | Path | None = None, validate: bool = True) -> App:
        """Load the config at ``path`` (``--config``, ``$BRIDGE_CONFIG`` or ``config/bridge.toml``).

        With ``validate``, every problem ``bridge check`` would report is raised as one ConfigError first.
        """
        try:
            loaded = load_config(path)
        except ConfigError as exc:
            if not validate:
                raise
            from bridge.check import check_file

            # a table that does not validate stops the load: the other problems are found as check finds them,
            # so that one run lists them all
            _partial, report = check_file(path, lambda cfg: create_host(cfg.plugins.disabled,
                                                                         cfg.bridge.plugins_dir))
            raise ConfigError(report.errors or list(exc.problems)) from None
        app = cls(loaded)
        if validate:
            from bridge.check import require_valid

            require_valid(app.loaded, app.host)
        return app

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the config are read from: the working directory."""
        return Path.cwd()

    @property
    def host(self) -> PluginHost:
        """The plugin host (built on first use)."""
        if self._host is None:
            self._host = create_host(self.config.plugins.disabled, self.config.bridge.plugins_dir)
            resolve_kinds(self.config, self._host.connectors())
        return self._host

    @cached_property
    def store(self) -> Store:
        """The store, migrated to the newest schema. StoreError, naming ``bridge.database`` and where the
        database is, when it cannot be opened."""
        from bridge.store import Store

        with self._database_named():
            return Store.open(self._database or self.config.bridge.database)

    @property
    def has_store(self) -> bool:
        """Whether the store exists yet (a SQLite file not created yet does not): read-only commands read an
        empty store instead of creating it."""
        from bridge.store import Store

        with self._database_named():
            return "store" in self.__dict__ or Store.exists(self._database or self.config.bridge.database)

    @contextmanager
    def _database_named(self) -> Iterator[None]:
        try:
            yield
        except StoreError as exc:
            raise StoreError(f"{self.loaded.where('bridge', 'database')}: {exc}") from None

    def connector(self, system: str) -> Connector:
        """The connector instance of a configured system (its settings validated by its plugin)."""
        if system in self._connectors:
            return self._connectors[system]
        table = self.config.connectors.get(system)
        if table is None:
            raise ConfigError(
                [f"{self.loaded.where('connectors')}: no connector named {system!r} is configured"]
            )
        classes = self.host.connectors()
        cls = classes.get(table.plugin)
        if cls is None:
            raise ConfigError(
                [
                    f"{self.loaded.where('connectors', system, 'plugin')}: plugin {table.plugin!r} "
                    f"is not installed"
                ]
            )
        if table.missing_secrets:
            # a secret's variable not set (or its file unreadable): a warning in `bridge check`, an error
            # when the connector starts
            raise ConfigError([
                f"{self.loaded.where('connectors', system, key)}: {reason}"
                for key, reason in table.missing_secrets.items()
            ])
        # (only what the table says: a key it leaves out takes the plugin's default, a vendor's base_url; but
        # kinds as the config holds them, which the core reads too)
        data = table.model_dump(by_alias=True, exclude={"missing_secrets"}, exclude_unset=True)
        data["kinds"] = list(table.kinds)
        data.update(table.model_extra or {})
        data = env_text(cls.settings_model, data, system)
        try:
            settings = cls.settings_model.model_validate(data)
        except ValidationError as exc:
            # messages only (never the input values: they may be secrets)
            raise ConfigError(
                validation_problems(
                    exc, self.loaded.path, self.loaded.lines, ("connectors", system), cls.settings_model
                )
            ) from None
        http = None
        if settings.base_url:
            from bridge.http import build_client

            try:
                http = build_client(settings, system=system)
            except OSError as exc:
                where = self.loaded.where("connectors", system, "ca_bundle")
                raise ConfigError([f"{where}: cannot read {settings.ca_bundle}: {exc.strerror}"]) from None
        try:
            instance = cls(ConnectorContext(system, settings, http))
        except (ConfigError, ConnectorStartError):
            raise
        except Exception as exc:  # (its own start: a licence server down, a plugin's fault)
            if http is not None:
                http.close()
            raise ConnectorStartError(
                f"{system}: the connector did not start: {type(exc).__name__}: {exc}") from exc
        self._connectors[system] = instance
        return instance

    def accepts_writes(self, system: str) -> bool:
        """Whether the plugin of ``system`` takes writes (read from its class: no connector is started)."""
        table = self.config.connectors.get(system)
        cls = self.host.connectors().get(table.plugin) if table is not None else None
        return cls is not None and cls.accepts_writes()

    def start_connectors(self, systems: Iterable[str] = ()) -> None:
        """Start the connectors of ``systems`` (of every enabled system when none is named) before any job
        runs: one ConfigError with every problem of the config (a secret not set, a CA bundle not readable),
        not a failed job. Any other failure of a connector's start is its system's alone: that system's jobs
        report it, one problem line each, and the others run."""
        wanted = set(systems)
        problems: list[str] = []
        for name, table in self.config.connectors.items():
            if name in wanted if wanted else table.enabled:
                try:
                    self.connector(name)
                except ConfigError as exc:
                    problems.extend(exc.problems)
                except ConnectorStartError:  # (its jobs fail on it again, each a problem of its own)
                    log.debug("connector %s did not start", name, exc_info=True)
        if problems:
            raise ConfigError(problems)

    def close(self) -> None:
        """Close connectors, their HTTP clients and the store."""
        for conn in self._connectors.values():
            conn.close()
            if isinstance(conn.context.http, httpx.Client):
                conn.context.http.close()
        self._connectors.clear()
        if "store" in self.__dict__:
            self.store.close()
