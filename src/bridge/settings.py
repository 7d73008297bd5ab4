"""The config file: TOML read into pydantic models, with environment overrides and secrets.

Environment variables override the file with pydantic-settings' conventions: prefix ``BRIDGE_``, nesting with
``__`` (``BRIDGE_CONNECTORS__HUBSPOT__TOKEN``). A key ending in ``_env`` names the variable holding a
secret, a key ending in ``_file`` names a file holding it; the secret is then available under the bare key.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from bridge.durations import format_duration, parse_duration
from bridge.errors import ConfigError, FieldValueError
from bridge.fields import FIELD_TYPES, FieldType

DEFAULT_CONFIG = "config/bridge.toml"
POLICIES = ("owner_wins", "prefer_owner_unless_blank", "fill_if_empty", "last_writer_wins")
RULE_SETS = ("routing", "escalation", "triggers")
STRATEGIES = ("round_robin", "least_loaded", "account_owner", "skills")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Strict(BaseModel):
    """Base of every config table: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def _duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NOT_AN_ENV_NAME = "not an environment variable name (the value is not shown: it may be the secret itself)"
WRONG_TYPE = "takes "  # a *_env or *_file key that is not text: an error of bridge check, as NOT_AN_ENV_NAME


def pasted_problem(what: str) -> str:
    """What to say of a ``*_env`` key that holds the secret itself, never the secret."""
    return f"{NOT_AN_ENV_NAME}; write the NAME of the variable that holds the {what}"


def is_env_name(name: str) -> bool:
    """Whether ``name`` can name an environment variable (POSIX: letters, digits, ``_``; no digit first)."""
    return _ENV_NAME.fullmatch(name) is not None


def _looks_secret(text: str) -> bool:
    """Whether ``text`` looks like a token rather than a name: long, letters and digits, no ``_``
    (Pipedrive's 40 hex digits; a variable or file is named in words)."""
    return (len(text) >= 20 and "_" not in text and any(c.isdigit() for c in text)
            and any(c.isalpha() for c in text) and " " not in text and "/" not in text)


def pasted_secret(ref: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``ref``, written where a variable's name goes, is surely the secret itself: no variable name
    at all, or a long run of letters and digits (a 40-hex-digit token) that names no variable set here."""
    env = os.environ if environ is None else environ
    return not is_env_name(ref) or (ref not in env and _looks_secret(ref))


def resolve_secrets(table: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Replace ``KEY_env`` / ``KEY_file`` entries by ``KEY`` holding the secret they point at.

    A variable that is not set or a file that cannot be read leaves ``KEY`` unset and records the reason
    under ``_missing_secrets`` so that ``bridge check`` can say which one.
    """
    env = os.environ if environ is None else environ
    out = dict(table)
    missing: dict[str, str] = {}
    for key, ref in table.items():
        if key.startswith("_"):
            continue
        if not isinstance(ref, str):
            if key.endswith("_env") and key[: -len("_env")] not in table:
                missing[key] = f'{WRONG_TYPE}the name of an environment variable, in quotes ("HUBSPOT_TOKEN")'
            elif key.endswith("_file") and key[: -len("_file")] not in table:
                missing[key] = f"{WRONG_TYPE}the path of a file, in quotes"
            continue
        if key.endswith("_env"):
            bare = key[: -len("_env")]
            if bare in table:
                continue
            if pasted_secret(ref, env):
                # surely the secret itself, pasted where its variable's name goes: never repeat it
                missing[key] = pasted_problem(bare)
            elif ref in env:
                out[bare] = env[ref]
            else:
                missing[key] = f"environment variable {ref} is not set"
        elif key.endswith("_file"):
            bare = key[: -len("_file")]
            if bare in table:
                continue
            try:
                out[bare] = Path(ref).read_text().strip()
            except OSError as exc:
                # a path is shown; what looks like no path may be the secret itself, pasted here
                if ("/" in ref or "." in ref) and all(
                        len(part) <= 40 and not _looks_secret(part) for part in ref.split("/")):
                    missing[key] = f"cannot read secret file {ref}: {exc.strerror}"
                else:
                    missing[key] = (f"cannot read the secret file this key names (the name is not shown: it "
                                    f"may be the secret itself): {exc.strerror}")
    if missing:
        out["_missing_secrets"] = missing
    return out


DEFAULT_PULL_EVERY = timedelta(minutes=5)


class ConnectorSettings(BaseModel):
    """Settings every connector takes; a plugin subclasses this for its own keys (secrets as SecretStr)."""

    model_config = ConfigDict(extra="forbid")

    plugin: str
    base_url: str | None = None
    sync_every: str | None = None
    kinds: list[str] = Field(default_factory=lambda: ["ticket"])
    objects: dict[str, str] = Field(default_factory=dict)
    ca_bundle: str | None = None
    timeout: float = 30.0
    enabled: bool = True
    # (bridge's own note of secrets it could not resolve: no key of the file, nor of its schema)
    missing_secrets: SkipJsonSchema[dict[str, str]] = Field(default_factory=dict, alias="_missing_secrets")

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            written = set(data)
            data = resolve_secrets(data)
            # the *_env / *_file keys were consumed; keep them only if the model declares them
            declared = set(cls.model_fields)
            for key in list(data):
                if (key.endswith("_env") or key.endswith("_file")) and key not in declared:
                    bare = key.rsplit("_", 1)[0]
                    if bare in declared or cls.model_config.get("extra") == "allow":
                        data.pop(key)
                    elif bare not in written:
                        # a misspelt key (tokn_env): it is the unknown key, not the secret it resolved to
                        data.pop(bare, None)
        return data

    _check_every = field_validator("sync_every")(classmethod(lambda cls, v: _duration(v)))

    @property
    def pull_every(self) -> timedelta:
        """How often the daemon pulls this system: ``sync_every``, else every five minutes."""
        return parse_duration(self.sync_every) if self.sync_every else DEFAULT_PULL_EVERY


class ConnectorTable(ConnectorSettings):
    """A ``[connectors.NAME]`` table as the core reads it; the plugin's own model checks the rest."""

    model_config = ConfigDict(extra="allow")


class BridgeSection(Strict):
    database: str = "sqlite:///bridge.db"
    timezone: str = "UTC"
    plugins_dir: str | None = None
    log_level: str = "INFO"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8787, ge=0, le=65535)  # (0: any free port)
    serve: bool = True
    webhook_secret: SecretStr | None = None
    webhook_secret_env: str | None = None
    webhook_secret_file: str | None = None
    outbox_max_attempts: int = 5
    summary: bool = True

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"use {', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]}, got {value!r}")
        return value.upper()


class FieldConfig(Strict):
    type: str
    kind: str = "ticket"
    options: list[str] = Field(default_factory=list)
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    owner: str = "bridge"
    policy: Literal["owner_wins", "prefer_owner_unless_blank", "fill_if_empty", "last_writer_wins"] = (
        "owner_wins"
    )
    on_conflict: Literal["revert", "report"] = "revert"
    sync_to: list[str] = Field(default_factory=list)
    remote: dict[str, str] = Field(default_factory=dict)
    description: str = ""

    @model_validator(mode="after")
    def _coherent(self) -> FieldConfig:
        # an unknown type is reported by `bridge check` with the other cross-table problems
        if self.type in FIELD_TYPES and self.options:
            problems = self.coherence_problems()
            if problems:
                # each at its own key (options.N, aliases.TARGET, aliases.TARGET.N): bridge check sets that
                # key aside, not the whole field, which would then be "not declared" wherever it is used
                raise ValidationError.from_exception_data(
                    "FieldConfig",
                    [
                        InitErrorDetails(type=PydanticCustomError("value_error", "{why}", {"why": why}),
                                         loc=loc, input=self._at(loc))
                        for loc, why in problems
                    ],
                )
        return self

    def _at(self, loc: tuple[str | int, ...]) -> Any:
        value: Any = {"options": self.options, "aliases": self.aliases}
        for part in loc:
            value = value[part]
        return value

    def coherence_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Options and aliases that do not make sense, each with its key: FieldType judges them one at a
        time, so that each problem is found where it is written and none hides another."""
        problems: list[tuple[tuple[str | int, ...], str]] = []

        def judge(loc: tuple[str | int, ...], options: list[str], aliases: dict[str, list[str]]) -> bool:
            try:
                FieldType(self.type, tuple(options), aliases)
            except FieldValueError as exc:
                problems.append((loc, str(exc)))
                return False
            return True

        options: list[str] = []
        for i, opt in enumerate(self.options):
            if judge(("options", i), [*options, opt], {}):
                options.append(opt)
        aliases: dict[str, list[str]] = {}
        for target, names in self.aliases.items():
            if not judge(("aliases", target), options, {**aliases, target: []}):
                continue
            aliases[target] = []
            for j, alias in enumerate(names):
                if judge(("aliases", target, j), options, {**aliases, target: [*aliases[target], alias]}):
                    aliases[target].append(alias)
        return problems

    def field_type(self, name: str = "") -> FieldType:
        """The coercion view of this field."""
        return FieldType(self.type, tuple(self.options), self.aliases, name)

    def remote_name(self, system: str, name: str) -> str:
        """What ``system`` calls this field (the field's own name unless ``remote`` says otherwise)."""
        return self.remote.get(system, name)


class TaxonomyConfig(Strict):
    pattern: str = r"^[a-z0-9-]+/[a-z0-9-]+$"
    prefixes: list[str] = Field(default_factory=list)
    synonyms: dict[str, list[str]] = Field(default_factory=dict)


class TagMapping(Strict):
    match: str
    set: dict[str, Any] = Field(default_factory=dict)


class CalendarConfig(Strict):
    timezone: str | None = None
    hours: dict[str, list[str]] = Field(default_factory=dict)
    holidays: list[str] = Field(default_factory=list)
    ical: str | None = None

    @field_validator("holidays", mode="before")
    @classmethod
    def _toml_dates(cls, value: Any) -> Any:
        """A TOML date (``holidays = [2026-12-25]``) is that day, as the string ``"2026-12-25"`` is; a TOML
        date-time or time becomes its text, which the calendar check then names as not a date."""
        if not isinstance(value, list):
            return value
        return [v.isoformat() if isinstance(v, date | time) else v for v in value]


class EscalationLevel(Strict):
    after: str = "0m"
    to: str

    _d = field_validator("after")(classmethod(lambda cls, v: _duration(v)))


class SlaConfig(Strict):
    name: str
    calendar: str | None = None
    when: dict[str, Any] = Field(default_factory=dict)
    first_response: str | None = None
    next_response: str | None = None
    resolution: str | None = None
    acknowledgement: str | None = None
    pause_on: list[str] = Field(default_factory=lambda: ["pending", "on_hold"])
    warn_before: str | None = None
    escalate: list[EscalationLevel] = Field(default_factory=list)

    _d = field_validator("warn_before")(classmethod(lambda cls, v: _duration(v)))

    @field_validator("first_response", "next_response", "resolution", "acknowledgement")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        # (a target of zero is "no target" in some helpdesks' forms: here it would breach, and escalate,
        # every ticket the policy chooses as it is created)
        if value is not None and parse_duration(value) <= timedelta(0):
            raise ValueError(
                f"a budget of {value} breaches every ticket at once; leave the key out for no clock")
        return value


class RuleConfig(Strict):
    name: str
    set: Literal["routing", "escalation", "triggers"] = "triggers"
    priority: int = 100
    when: dict[str, Any] = Field(default_factory=dict)
    then: list[dict[str, Any]] = Field(default_factory=list)
    enabled: bool = True

    @field_validator("priority", mode="before")
    @classmethod
    def _no_boolean(cls, value: Any) -> Any:
        # lax mode reads true as 1: surely a mistake for an order (a number from the environment is text)
        if isinstance(value, bool):
            raise ValueError(f"priority takes a whole number, got {str(value).lower()}")
        return value


class RoutingConfig(Strict):
    strategy: Literal["round_robin", "least_loaded", "account_owner", "skills"] = "round_robin"
    fallback: Literal["round_robin", "least_loaded", "account_owner", "skills"] | None = None
    tier_order: list[str] = Field(default_factory=list)


class TeamConfig(Strict):
    members: list[str] = Field(default_factory=list)
    calendar: str | None = None


class AgentConfig(Strict):
    email: str
    name: str = ""
    skills: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    capacity: int = 10
    calendar: str | None = None
    status: Literal["active", "away", "offline"] = "active"


class AfterConfig(Strict):
    after: str
    message: str = ""

    _d = field_validator("after")(classmethod(lambda cls, v: _duration(v)))


class TopicRule(Strict):
    window: str
    ratio: float = Field(ge=0, allow_inf_nan=False)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if not parse_duration(value):
            raise ValueError("a window must be longer than nothing")
        return value


class TopicsConfig(Strict):
    tracker: str | None = None
    min_count: int = Field(default=5, ge=1)
    rules: list[TopicRule] = Field(default_factory=list)
    prefixes: list[str] = Field(default_factory=list)


class ClassifyConfig(Strict):
    keywords: dict[str, list[str]] = Field(default_factory=dict)
    min_confidence: float = Field(default=0.6, ge=0, le=1)


class PluginsConfig(Strict):
    disabled: list[str] = Field(default_factory=list)


class Config(BaseSettings):
    """The whole config file; environment variables ``BRIDGE_*`` override its values."""

    model_config = SettingsConfigDict(
        env_prefix="BRIDGE_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    bridge: BridgeSection = Field(default_factory=BridgeSection)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    connectors: dict[str, ConnectorTable] = Field(default_factory=dict)
    fields: dict[str, FieldConfig] = Field(default_factory=dict)
    taxonomy: TaxonomyConfig = Field(default_factory=TaxonomyConfig)
    tags: list[TagMapping] = Field(default_factory=list)
    calendars: dict[str, CalendarConfig] = Field(default_factory=dict)
    sla: list[SlaConfig] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    teams: dict[str, TeamConfig] = Field(default_factory=dict)
    agents: list[AgentConfig] = Field(default_factory=list)
    follow_up: AfterConfig | None = None
    auto_close: AfterConfig | None = None
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig)
    identity: dict[str, list[str]] = Field(default_factory=dict)
    deletes: dict[str, Literal["ignore", "flag", "archive"]] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the environment wins over the file (the file arrives as init arguments)
        file = init_settings.init_kwargs if isinstance(init_settings, InitSettingsSource) else {}
        return _EnvOverFile(settings_cls, file), init_settings

    def field_types(self) -> dict[str, FieldType]:
        """Every declared field's coercion view, by name (a field of an unknown type is left out)."""
        return {name: f.field_type(name) for name, f in self.fields.items() if f.type in FIELD_TYPES}

    def remote_to_field(self, system: str, kind: str) -> dict[str, str]:
        """Remote field name (as ``system`` spells it) -> field name, for fields of ``kind``."""
        return {f.remote_name(system, n): n for n, f in self.fields.items() if f.kind == kind}


class _EnvOverFile(EnvSettingsSource):
    """The ``BRIDGE_*`` variables, where one that names a list entry by its index
    (``BRIDGE_RULES__0__PRIORITY``) changes that entry of the file's list instead of replacing the list by a
    table ``{"0": ...}``.

    An entry the file does not have is left as the environment gave it: validation then names the variable
    (see :func:`validation_problems`).
    """

    def __init__(self, settings_cls: type[BaseSettings], file: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.file = file

    def __call__(self) -> dict[str, Any]:
        try:
            values = super().__call__()
        except SettingsError as exc:  # a list or table given as JSON that does not parse
            raise ConfigError(_bad_json_variables() or _not_json_variables(self.settings_cls) or [str(exc)]
                              ) from None
        return {key: _overlay(self.file.get(key), value) for key, value in values.items()}


def _bad_json_variables() -> list[str]:
    """``$VAR: KEY: ...`` for each ``BRIDGE_*`` variable whose value looks like JSON and is not."""
    out = []
    for var, value in sorted(os.environ.items()):
        why = _bad_json(value) if var.upper().startswith("BRIDGE_") else None
        if why is not None:
            key = ".".join(var[len("BRIDGE_"):].lower().split("__"))
            out.append(f"${var}: {key}: the variable's value is not valid JSON: {why}")
    return out


def _not_json_variables(model: type[BaseModel]) -> list[str]:
    """``$VAR: KEY: ...`` for each ``BRIDGE_*`` variable that sets a list or a table with a value that is not
    JSON at all (``webform`` for ``["webform"]``). Its value is not shown: it may be anything."""
    out = []
    for var, value in sorted(os.environ.items()):
        if not var.upper().startswith("BRIDGE_"):
            continue
        path = var[len("BRIDGE_"):].lower().split("__")
        try:
            json.loads(value)
            continue
        except ValueError:
            pass
        kind = _complex_at(model, path)
        if kind is not None:
            example = '["a", "b"]' if kind == "list" else '{"key": "value"}'
            out.append(f"${var}: {'.'.join(path)}: takes a {kind} written as JSON ({example}); the "
                       "variable's value is not JSON")
    return out


def _complex_at(model: type[BaseModel], path: list[str]) -> str | None:
    """``"list"`` or ``"table"`` when ``path`` names a key of that type in ``model``, else None."""
    annotation: Any = model
    for i, part in enumerate(path):
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(part)
            if info is None:
                return None
            annotation = info.annotation
        elif typing.get_origin(annotation) is dict and i > 0:
            annotation = typing.get_args(annotation)[1]
        else:
            return None
        for arg in (annotation, *typing.get_args(annotation)):  # (an optional one: X | None)
            table = isinstance(arg, type) and issubclass(arg, BaseModel)
            if typing.get_origin(arg) in (list, dict) or table:
                annotation = arg
                break
    origin = typing.get_origin(annotation)
    if origin is list:
        return "list"
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "table"
    return None


def _overlay(base: Any, env: Any, entry: bool = False) -> Any:
    """The file's value ``base`` with the environment's ``env`` laid over it: a table key by key, a list entry
    by index. Inside an entry, a list or table given as text is JSON, as a whole-list override is (the
    variables there are read as text: pydantic-settings decodes JSON only where it knows the key's type)."""
    if isinstance(env, dict) and isinstance(base, list):
        if not env or not all(k.isdigit() and int(k) < len(base) for k in env):
            return env
        out = list(base)
        for k, v in env.items():
            out[int(k)] = _overlay(base[int(k)], v, True)
        return out
    if isinstance(env, dict) and isinstance(base, dict):
        return {**base, **{k: _overlay(base.get(k), v, entry) for k, v in env.items()}}
    if entry and isinstance(env, str) and env.lstrip()[:1] in ("[", "{"):
        try:
            found = json.loads(env)
        except ValueError:
            return env
        return found if isinstance(found, list | dict) else env
    return env


# ---------------------------------------------------------------- loading with file and line


class LoadedConfig:
    """A validated config with where it came from (for messages naming file and line)."""

    def __init__(
        self,
        config: Config,
        path: Path,
        lines: dict[tuple[str, ...], int],
        set_aside: frozenset[tuple[str, ...]] = frozenset(),
    ) -> None:
        self.config = config
        self.path = path
        self.lines = lines
        # key paths that did not validate and were dropped (or stubbed) to check the rest: see load_partial
        self.set_aside = set_aside

    def is_set_aside(self, *key: str | int) -> bool:
        """Whether ``key`` lies in a part that did not validate (its problems are already reported)."""
        parts = tuple(str(k) for k in key)
        return any(parts[:n] in self.set_aside for n in range(1, len(parts) + 1))

    def where(self, *key: str | int) -> str:
        """``FILE:LINE: KEY`` for a key path (the nearest enclosing key that has a line), or ``$VAR: KEY``
        when a ``BRIDGE_*`` variable set the key or a table holding it (the file's line would be wrong)."""
        parts = tuple(str(k) for k in key)
        var = env_source(parts)
        if var is not None:
            return f"${var}: {'.'.join(parts) or '(top)'}"
        return where(self.path, self.lines, parts)


def where(path: Path, lines: dict[tuple[str, ...], int], key: tuple[str, ...]) -> str:
    """``FILE:LINE: dotted.key`` for a key path, using the closest enclosing key that has a line."""
    for n in range(len(key), 0, -1):
        if key[:n] in lines:
            return f"{path}:{lines[key[:n]]}: {'.'.join(key)}"
    return f"{path}:1: {'.'.join(key) or '(top)'}"


_BARE = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = re.compile(r"[,\]}\n#]")


class _LineScanner:
    """A small TOML reader that records the line of every key and array item (the text is valid TOML)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.lines: dict[tuple[str, ...], int] = {}
        self.counts: dict[tuple[str, ...], int] = {}

    def run(self) -> dict[tuple[str, ...], int]:
        text = self.text
        table: tuple[str, ...] = ()
        while True:
            self.skip(newlines=True)
            if self.i >= len(text):
                return self.lines
            if text[self.i] == "[":
                table = self.header()
            else:
                number = self.line
                path = (*table, *self.key())
                self.enclosing(path, number)
                self.lines[path] = number
                self.value(path)
            self.skip(newlines=False)

    def header(self) -> tuple[str, ...]:
        number, double = self.line, self.text.startswith("[[", self.i)
        self.i += 2 if double else 1
        raw = self.key()
        self.i += 2 if double else 1
        if double:
            # [[rules.then]] under [[rules]] belongs to the last rule: its items are counted per rule
            array = (*_resolve_arrays(raw[:-1], self.counts), raw[-1])
            idx = self.counts.get(array, -1) + 1
            self.counts[array] = idx
            table = (*array, str(idx))
        else:
            table = _resolve_arrays(raw, self.counts)
        self.enclosing(table, number)
        self.lines[table] = number
        return table

    def enclosing(self, path: tuple[str, ...], number: int) -> None:
        """Give the tables a header or dotted key creates on the way (``calendar`` of ``[calendar.support]``)
        the line where they first appear, so that a problem about one of them is not put at line 1."""
        for n in range(1, len(path)):
            self.lines.setdefault(path[:n], number)

    def skip(self, newlines: bool) -> None:
        """Past blanks and comments (and newlines if asked)."""
        text = self.text
        while self.i < len(text):
            c = text[self.i]
            if c in " \t\r":
                self.i += 1
            elif c == "#":
                end = text.find("\n", self.i)
                self.i = len(text) if end < 0 else end
            elif c == "\n" and newlines:
                self.i += 1
                self.line += 1
            else:
                return

    def key(self) -> tuple[str, ...]:
        """A dotted key, up to and past its ``=`` (or up to a header's closing bracket)."""
        parts: list[str] = []
        while True:
            self.skip(newlines=False)
            c = self.text[self.i]
            if c in "\"'":
                parts.append(self.string())
            else:
                match = _BARE.match(self.text, self.i)
                if match is None:
                    raise ValueError(f"no key at line {self.line}")
                parts.append(match.group())
                self.i = match.end()
            self.skip(newlines=False)
            c = self.text[self.i] if self.i < len(self.text) else ""
            self.i += 1
            if c == "=" or c == "]":
                if c == "]":
                    self.i -= 1
                return tuple(parts)
            if c != ".":
                raise ValueError(f"unexpected {c!r} at line {self.line}")

    def string(self) -> str:
        """A quoted string of any of the four kinds; newlines inside it are counted."""
        text, i = self.text, self.i
        quote = text[i]
        if text.startswith(quote * 3, i):
            end = text.find(quote * 3, i + 3)
            if quote == '"':
                while end > 0 and _escaped(text, end):
                    end = text.find('"""', end + 1)
            if end < 0:
                raise ValueError("unterminated string")
            while text.startswith(quote, end + 3):  # up to two quotes may end the content
                end += 1
            value = text[i + 3 : end]
            self.i = end + 3
        else:
            end = text.find(quote, i + 1)
            if quote == '"':
                while end > 0 and _escaped(text, end):
                    end = text.find('"', end + 1)
            if end < 0:
                raise ValueError("unterminated string")
            value = text[i + 1 : end]
            self.i = end + 1
        self.line += value.count("\n")
        return value

    def value(self, path: tuple[str, ...]) -> None:
        self.skip(newlines=False)
        c = self.text[self.i]
        if c == "[":
            self.items(path)
        elif c == "{":
            self.inline(path)
        elif c in "\"'":
            self.string()
        else:
            match = _SCALAR_END.search(self.text, self.i)
            self.i = len(self.text) if match is None else match.start()

    def items(self, path: tuple[str, ...]) -> None:
        self.i += 1
        idx = 0
        while True:
            self.skip(newlines=True)
            if self.text[self.i] == "]":
                self.i += 1
                return
            self.lines.setdefault((*path, str(idx)), self.line)
            self.value((*path, str(idx)))
            self.skip(newlines=True)
            if self.text[self.i] == ",":
                self.i += 1
                idx += 1

    def inline(self, path: tuple[str, ...]) -> None:
        self.i += 1
        while True:
            self.skip(newlines=True)
            if self.text[self.i] == "}":
                self.i += 1
                return
            number = self.line
            sub = (*path, *self.key())
            self.enclosing(sub, number)
            self.lines.setdefault(sub, number)
            self.value(sub)
            self.skip(newlines=True)
            if self.text[self.i] == ",":
                self.i += 1


def _escaped(text: str, at: int) -> bool:
    """Whether the character at ``at`` is escaped by an odd run of backslashes."""
    n = 0
    while at - n - 1 >= 0 and text[at - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path of a TOML document to the line (1-based) where it is written.

    Arrays of tables get their index (``tags.0.match``); so do array items (``rules.0.then.1``), and keys of
    inline tables map to their own line even inside a multi-line array. Strings are skipped whole, so a
    bracket or ``#`` inside one changes nothing. The text is valid TOML (tomllib read it first); should
    the scanner still meet something it does not follow, the keys read so far are kept.
    """
    scanner = _LineScanner(text)
    try:
        return scanner.run()
    except (ValueError, IndexError, RecursionError):
        return scanner.lines


def _resolve_arrays(raw: tuple[str, ...], counts: dict[tuple[str, ...], int]) -> tuple[str, ...]:
    # a header names the last element of each array of tables on its way: [a.b] under [[a]] is a.N.b, and
    # counts is keyed by such resolved paths, so [[a.b]] items are counted per element of a
    out: list[str] = []
    for part in raw:
        out.append(part)
        if tuple(out) in counts:
            out.append(str(counts[tuple(out)]))
    return tuple(out)


def read_toml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Read a TOML file; a syntax error becomes a ConfigError naming the file and line."""
    try:
        # (utf-8-sig: a byte-order mark some editors write is no part of the text)
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        bad_line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError([
            f"{path}:{bad_line}: (file): not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save the file "
            "as UTF-8"
        ]) from None
    except FileNotFoundError:
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise ConfigError([
            f"{path}:0: (file): cannot read config: no such file here{where}; name the config file with "
            f"--config PATH or $BRIDGE_CONFIG (without either, bridge reads {DEFAULT_CONFIG})"
        ]) from None
    except OSError as exc:
        raise ConfigError([f"{path}:0: (file): cannot read config: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = match.group(1) if match else "1"
        raise ConfigError([f"{path}:{line}: (syntax): {exc}"]) from None
    except RecursionError:
        # the parser recurses once per level of nested arrays and inline tables
        line = _deepest_line(text)
        raise ConfigError([f"{path}:{line}: (syntax): arrays or tables nested too deeply to read"]) from None
    return data, key_lines(text)


def _deepest_line(text: str) -> int:
    """The line where brackets and braces nest deepest (strings and comments skipped roughly: the text is
    too deep for the parser, so only a pointer is wanted)."""
    depth = best = 0
    line = best_line = 1
    quote = ""
    for i, c in enumerate(text):
        if c == "\n":
            line += 1
            quote = "" if quote == "#" else quote
        elif quote:
            if c == quote and (quote == "#" or not _escaped(text, i)):
                quote = ""
        elif c in "\"'#":
            quote = c
        elif c in "[{":
            depth += 1
            if depth > best:
                best, best_line = depth, line
        elif c in "]}":
            depth -= 1
    return best_line


# keys whose value is a duration (validated by parse_duration): a number there is surely meant as one
DURATION_KEYS = frozenset(
    {"sync_every", "after", "window", "first_response", "next_response", "resolution", "acknowledgement",
     "warn_before"}
)


def _model_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The config table model that holds the last key of ``loc`` (None past a plain value)."""
    entry = False  # the next part is an index of a list of tables, or the name in a table of tables
    for part in loc[:-1]:
        if entry:
            entry = False
            continue
        info = model.model_fields.get(str(part))
        found = _table_model(info.annotation) if info is not None else None
        if info is None or found is None:
            return None
        model = found
        entry = typing.get_origin(info.annotation) in (list, dict)
    return None if entry else model


def _table_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a table key: a table, an optional one, a list or a table of them."""
    for arg in (annotation, *typing.get_args(annotation)):
        for inner in (arg, *typing.get_args(arg)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def known_keys(model: type[BaseModel]) -> list[str]:
    """The keys a config table takes: its fields, and ``KEY_env`` / ``KEY_file`` for a connector's secrets."""
    keys = []
    for name, info in model.model_fields.items():
        if info.alias and info.alias.startswith("_"):
            continue  # (bridge's own bookkeeping, never written)
        keys.append(name)
        secret = SecretStr in (info.annotation, *typing.get_args(info.annotation))
        if secret and issubclass(model, ConnectorSettings):
            keys += [f"{name}_env", f"{name}_file"]
    return keys


def _plain(err: Any, loc: tuple[str, ...], shown: bool) -> str | None:
    """A common wrong type in plain words (pydantic's own text otherwise); ``shown``: the value may be
    repeated (it is no secret)."""
    kind, value, key = err["type"], err.get("input"), loc[-1] if loc else ""
    if key.isdigit() and len(loc) > 1:
        key = f"an item of {loc[-2]}"  # (options.0: "an item of options takes text")
    got = f", got {value!r}" if shown and isinstance(value, str | int | float) else f", got {_shape(value)}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{key} takes a whole number{got}"
    if kind in ("float_parsing", "float_type"):
        return f"{key} takes a number{got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"{key} takes true or false{got}"
    if kind == "list_type":
        one = shown and isinstance(value, str)
        example = f" (write [{json.dumps(value, ensure_ascii=False)}] for one)" if one else ""
        return f"{key} takes a list in brackets{example}, got {_shape(value)}"
    if kind == "string_type" and key in DURATION_KEYS:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            spelt = format_duration(timedelta(seconds=value))
            return f'{key} takes a duration in quotes: write "{spelt}" for {value} seconds (units s, m, h, d)'
        return f'{key} takes a duration in quotes (e.g. "30s", "15m", "4h", "2d"), got {_shape(value)}'
    if kind == "string_type":
        return f"{key} takes text in quotes, got {_shape(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        example = (' (each tag to its other spellings: synonyms = { "billing/refund" = ["refund", '
                   '"billing/refunds"] })' if key == "synonyms" else "")
        return f"{key} takes a table{example}, got {_shape(value)}"
    return None


def _shape(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    kinds = {str: "a string", int: "a number", float: "a number", list: "a list", dict: "a table"}
    return next((name for t, name in kinds.items() if isinstance(value, t)), type(value).__name__)


def validation_problems(
    exc: ValidationError,
    path: Path,
    lines: dict[tuple[str, ...], int],
    prefix: tuple[str, ...] = (),
    model: type[BaseModel] | None = None,
) -> list[str]:
    """Turn pydantic errors into ``FILE:LINE: KEY: message`` lines (``model``: what was validated, the whole
    Config unless given; its keys are the suggestions for an unknown one)."""
    out = []
    for err in exc.errors():
        loc = (*prefix, *(str(p) for p in err["loc"]))
        msg = err["msg"]
        secret = any("secret" in p or "token" in p or "password" in p for p in loc)
        var = env_source(loc)
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            table = _model_at(model or Config, tuple(err["loc"]))
            close = difflib.get_close_matches(str(err["loc"][-1]), known_keys(table), n=1) if table else []
            if close:
                msg += f" (did you mean {close[0]!r}?)"
        elif var is not None and _bad_json(err.get("input")):
            msg = f"the variable's value is not valid JSON: {_bad_json(err.get('input'))}"
        elif (plain := _plain(err, loc, not secret)) is not None:
            msg = plain
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif err["type"] == "literal_error" and not secret:
            msg = f"{msg}, got {err['input']!r}"
        below = env_below(loc) if var is None and isinstance(err.get("input"), dict) else None
        if below is not None:
            # a variable set a key inside a value the file gives otherwise (a list entry it does not have)
            var, (part, *_rest) = below
            if err["type"] == "list_type" and part.isdigit():
                msg = f"the file's list has no entry {part} for the variable to change (entries count from 0)"
        if var is not None:  # the value came from the environment, not from the file
            out.append(f"${var}: {'.'.join(loc)}: {msg}")
        else:
            out.append(f"{where(path, lines, loc)}: {msg}")
    return out


def _bad_json(value: Any) -> str | None:
    """Why ``value``, text that looks like JSON (a list or a table), is not valid JSON; None if it is, or
    does not look like JSON."""
    if not isinstance(value, str) or value.lstrip()[:1] not in ("[", "{"):
        return None
    try:
        json.loads(value)
    except ValueError as exc:
        return str(exc)
    return None


def env_source(loc: tuple[str, ...]) -> str | None:
    """The ``BRIDGE_*`` variable that set ``loc`` (or a table holding it), if one did."""
    names = {k.upper(): k for k in os.environ if k.upper().startswith("BRIDGE_")}
    for n in range(len(loc), 0, -1):
        var = "BRIDGE_" + "__".join(loc[:n]).upper()
        if var in names:
            return names[var]
    return None


def env_text(model: type[BaseModel], data: dict[str, Any], system: str) -> dict[str, Any]:
    """``data`` (a connector's table) with each text key that a ``BRIDGE_*`` variable set as digits (or
    ``true``) given that variable's text: such a value is read as JSON on its way in, so a path ``2024`` or an
    all-digit token arrived as a number."""
    out = dict(data)
    for key, value in data.items():
        info = model.model_fields.get(key)
        if info is None or isinstance(value, str) or not isinstance(value, int | float | bool):
            continue
        args = set(typing.get_args(info.annotation)) or {info.annotation}
        var = env_source(("connectors", system, key))
        # (only the key's own variable: one that sets the whole table is JSON, read as such)
        own = var is not None and var.upper() == f"BRIDGE_CONNECTORS__{system}__{key}".upper()
        if own and args & {str, SecretStr}:
            out[key] = os.environ[str(var)]
    return out


def env_below(loc: tuple[str, ...]) -> tuple[str, list[str]] | None:
    """A ``BRIDGE_*`` variable that sets a key inside ``loc`` (the first by name) and the key's parts below
    ``loc`` (lower-cased), if one does."""
    head = ("BRIDGE_" + "__".join(loc) + "__").upper()
    names = sorted(k for k in os.environ if k.upper().startswith(head))
    if not names:
        return None
    return names[0], names[0][len(head):].lower().split("__")


def resolve_config_path(path: str | os.PathLike[str] | None) -> Path:
    """``--config`` if given, else ``$BRIDGE_CONFIG``, else ``config/bridge.toml``."""
    if path:
        return Path(path)
    return Path(os.environ.get("BRIDGE_CONFIG") or DEFAULT_CONFIG)


def load_config(path: str | os.PathLike[str] | None = None) -> LoadedConfig:
    """Read, override from the environment and validate a config; raises ConfigError with every problem."""
    file = resolve_config_path(path)
    data, lines = read_toml(file)
    try:
        config = Config(**data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, file, lines)) from None
    return LoadedConfig(config, file, lines)


# what stands in for a missing required key while the rest of the config is checked
_STAND_INS: dict[str, Any] = {"type": "text", "after": "0m", "window": "0m", "ratio": 0.0}


def load_partial(path: str | os.PathLike[str] | None = None) -> tuple[LoadedConfig | None, list[str]]:
    """The config and its validation problems; with problems, the config holds the parts that validated.

    So that ``bridge check`` reports every problem at once, each invalid value is set aside (dropped back to
    its default) and an entry missing a required key gets a stand-in; the paths set aside are recorded on
    the result so that checks on them stay quiet. None when the problems cannot be set aside (a bad value
    from the environment, say). A syntax error still raises ConfigError.
    """
    file = resolve_config_path(path)
    data, lines = read_toml(file)
    try:
        return LoadedConfig(Config(**data), file, lines), []
    except ValidationError as exc:
        problems = validation_problems(exc, file, lines)
        errors = exc.errors()
    repaired = copy.deepcopy(data)
    aside: set[tuple[str, ...]] = set()
    stubbed: set[tuple[str | int, ...]] = set()
    for _ in range(10):
        if not any([_set_aside(repaired, tuple(e["loc"]), e["type"], aside, stubbed) for e in errors]):
            return None, problems
        _purge_options(repaired)
        try:
            config = Config(**repaired)
        except ValidationError as exc:
            errors = exc.errors()
            continue
        return LoadedConfig(config, file, lines, frozenset(aside)), problems
    return None, problems


def _set_aside(
    data: dict[str, Any],
    loc: tuple[str | int, ...],
    kind: str,
    aside: set[tuple[str, ...]],
    stubbed: set[tuple[str | int, ...]],
) -> bool:
    """Drop (or stub) what one validation error is about; False when nothing in the file could be."""
    parts = tuple(str(p) for p in loc)
    if not loc or env_source(parts) is not None:
        return False
    if kind == "list_type" and env_below(parts) is not None:
        return False  # a variable names an entry the file's list does not have: the file is not at fault
    if kind == "missing" and loc not in stubbed:
        parent = _get(data, loc[:-1])
        if isinstance(parent, dict) and isinstance(loc[-1], str):
            parent[loc[-1]] = _STAND_INS.get(loc[-1], "")
            stubbed.add(loc)
            aside.add(tuple(str(p) for p in loc[:-1]))  # the entry is incomplete: none of it is checked
            return True
    if _item_of_field_list(loc, data):
        # an option (or an alias) that does not make sense: the item alone is dropped, after this pass (the
        # other problems of the pass name their items by the indexes as written), and the field keeps the rest
        parent = _get(data, loc[:-1])
        assert isinstance(parent, list)
        parent[loc[-1]] = _DROPPED  # type: ignore[index]
        aside.add(parts)
        return True
    if _item_of_text_list(loc, data):
        # a calendar's holiday or period of the wrong type: the item alone is set aside (a stand-in keeps the
        # others' places), so the other items are still checked
        parent = _get(data, loc[:-1])
        assert isinstance(parent, list)
        parent[loc[-1]] = ""  # type: ignore[index]
        aside.add(tuple(str(p) for p in loc))
        return True
    # drop the innermost table key at or above the error (never a list item: that would renumber the rest)
    for n in range(len(loc), 0, -1):
        parent = _get(data, loc[: n - 1])
        if isinstance(parent, dict) and loc[n - 1] in parent:
            del parent[loc[n - 1]]
            aside.add(tuple(str(p) for p in loc[:n]))
            return True
    return False


_DROPPED: Any = object()  # an item set aside from a list until the pass ends: see _purge_options


def _item_of_field_list(loc: tuple[str | int, ...], data: dict[str, Any]) -> bool:
    """Whether ``loc`` is an item of a field's ``options`` or of one of its ``aliases`` lists."""
    if len(loc) < 4 or loc[0] != "fields" or not isinstance(loc[-1], int):
        return False
    if loc[2:-1] != ("options",) and not (len(loc) == 5 and loc[2] == "aliases"):
        return False
    items = _get(data, loc[:-1])
    return isinstance(items, list) and 0 <= loc[-1] < len(items)


def _purge_options(data: dict[str, Any]) -> None:
    """Remove the options and aliases :func:`_set_aside` dropped."""
    fields = data.get("fields")
    for table in fields.values() if isinstance(fields, dict) else ():
        if not isinstance(table, dict):
            continue
        lists = [table.get("options")]
        aliases = table.get("aliases")
        if isinstance(aliases, dict):
            lists.extend(aliases.values())
        for items in lists:
            if isinstance(items, list):
                items[:] = [item for item in items if item is not _DROPPED]


def _item_of_text_list(loc: tuple[str | int, ...], data: dict[str, Any]) -> bool:
    """Whether ``loc`` is an item of a calendar's ``holidays`` or of one day's ``hours`` that is no text."""
    if len(loc) < 4 or loc[0] != "calendars" or not isinstance(loc[-1], int):
        return False
    if not (loc[2:-1] == ("holidays",) or (len(loc) == 5 and loc[2] == "hours")):
        return False
    item = _get(data, loc)
    return item is not None and not isinstance(item, str) and isinstance(_get(data, loc[:-1]), list)


def _get(data: Any, loc: tuple[str | int, ...]) -> Any:
    for part in loc:
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not in_list and not (isinstance(data, dict) and part in data):
            return None
        data = data[part]
    return data


def duration(value: str | None, default: timedelta | None = None) -> timedelta | None:
    """A config duration as a timedelta (None stays ``default``)."""
    return default if value is None else parse_duration(value)


__all__ = [
    "DAYS",
    "FIELD_TYPES",
    "POLICIES",
    "RULE_SETS",
    "STRATEGIES",
    "Config",
    "ConnectorSettings",
    "LoadedConfig",
    "load_config",
    "load_partial",
]
