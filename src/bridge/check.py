"""``bridge check``: every problem of a config at once, each as ``FILE:LINE: KEY: message``.

Pydantic validates shapes and types (unknown keys, bad durations, wrong literals); this module adds what
spans tables: owners and ``sync_to`` naming configured systems, tag mappings naming declared fields and
options, rules and SLAs naming known fields, teams, agents and calendars, connectors naming installed plugins.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from bridge.connectors.files import FilesSettings, missing_path
from bridge.durations import format_duration, parse_duration
from bridge.errors import ConfigError, FieldValueError
from bridge.fields import FIELD_TYPES, FieldType, coerce
from bridge.model import BRIDGE, KINDS, TICKET_PRIORITIES, TICKET_STATUSES
from bridge.plugins import PluginHost, resolve_kinds
from bridge.rules.conditions import ORDER_OPS, paths_read
from bridge.rules.routing import ASSIGN_KEYS
from bridge.rules.sla import METRICS
from bridge.settings import (
    NOT_AN_ENV_NAME,
    WRONG_TYPE,
    CalendarConfig,
    Config,
    LoadedConfig,
    SlaConfig,
    env_source,
    env_text,
    load_partial,
    pasted_problem,
    pasted_secret,
    validation_problems,
)

TICKET_ATTRS = frozenset(
    {
        "id",
        "subject",
        "body",
        "text",
        "status",
        "priority",
        "channel",
        "assignee",
        "sentiment",
        "language",
        "created_at",
        "updated_at",
        "confidence",
        "tags",
        "team",
        "escalations",
        "type",
    }
)
ACCOUNT_ATTRS = frozenset({"id", "name", "tier", "arr", "owner", "domain", "plan", "renewal_date"})
REQUESTER_ATTRS = frozenset({"id", "email", "name", "language", "vip", "title"})
NOTIFY_KEYS = ("to", "message")  # what the engine's notify action reads
# paths that hold numbers whatever the config declares (declared number fields are added per config)
NUMERIC_PATHS = frozenset({"ticket.sentiment", "ticket.confidence", "account.arr"})
PRIORITIES = TICKET_PRIORITIES
EMPTY_WHEN = "when = {} is an empty condition; leave when out"


@dataclass
class Report:
    """The outcome of a check: errors make ``bridge check`` exit 1, warnings do not."""

    errors: list[str]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        """No errors."""
        return not self.errors


def check_file(path: str | Path | None, host_factory: Any) -> tuple[LoadedConfig | None, Report]:
    """Load and check a config file; ``host_factory(config)`` builds the plugin host to check connectors."""
    try:
        loaded, problems = load_partial(path)
    except ConfigError as exc:
        return None, Report(list(exc.problems), [])
    if loaded is None:
        return None, Report(problems, [])
    host = host_factory(loaded.config)
    if host is not None:
        resolve_kinds(loaded.config, host.connectors())
    report = check_config(loaded, host)
    if not problems:
        return loaded, report
    # the checks ran on the parts that validated: report them with the parts that did not
    return None, Report(problems + [e for e in report.errors if e not in problems], report.warnings)


def check_config(loaded: LoadedConfig, host: PluginHost | None) -> Report:
    """Every cross-table problem of a loaded config."""
    sink = _Sink(loaded)
    err, warn = sink.err, sink.warn
    cfg = loaded.config
    systems = set(cfg.connectors)

    try:
        zoneinfo.ZoneInfo(cfg.bridge.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        err(("bridge", "timezone"), f"unknown time zone {cfg.bridge.timezone!r}")

    _check_database(cfg.bridge.database, err, warn)
    # (a connector's keys are checked with its plugin's model, in _check_connectors)
    file = {k: v for k, v in _file_data(loaded).items() if k != "connectors"}
    _check_numbers(Config, file, (), err)
    _check_env_values(err)
    _check_connectors(loaded, host, sink)
    if host is not None:
        for problem in host.errors:
            key = (
                ("bridge", "plugins_dir") if "plugins_dir" in problem or "folder" in problem else ("plugins",)
            )
            sink.warn(key, problem)
    classes = host.connectors() if host is not None else {}
    kinds = set(KINDS).union(*(set(c.kinds) for c in classes.values()))  # plugins may add kinds
    _check_fields(cfg, systems, kinds, err, warn)
    # a field whose type or options did not validate is still declared: what names it is not judged by them
    unjudged = {
        n for n, f in cfg.fields.items()
        if f.type not in FIELD_TYPES or loaded.is_set_aside("fields", n, "type")
        or loaded.is_set_aside("fields", n, "options")
    }
    for name, f in cfg.fields.items():
        for i, target in enumerate(f.sync_to):
            plugin = cfg.connectors[target].plugin if target in cfg.connectors else ""
            cls = classes.get(plugin)
            if cls is not None and not cls.accepts_writes():
                err(("fields", name, "sync_to", i), f"{target!r} (plugin {plugin!r}) takes no writes")
    _check_tags(cfg, unjudged, err, warn)
    _check_calendars(loaded, err)
    _check_slas(cfg, err, warn)
    _check_rules(cfg, unjudged, err, warn)
    _check_tier_order(cfg, unjudged, err)

    if cfg.follow_up is not None and not (cfg.follow_up.message or "").strip():
        warn(("follow_up",), "no message: the reminder bridge tells the helpdesk has no text (set message = "
                             "\"...\", the reminder the customer gets)")
    if cfg.topics.tracker and cfg.topics.tracker not in systems:
        err(("topics", "tracker"), f"tracker {cfg.topics.tracker!r} is not a configured connector")
    elif cfg.topics.tracker:
        table = cfg.connectors[cfg.topics.tracker]
        cls = classes.get(table.plugin)
        if cls is None:
            pass  # (the plugin is not installed: said of its table)
        elif "topic" not in cls.kinds or not cls.accepts_writes():
            # (a warning: replay and bridge topics still find the spikes; only bridge run files nothing)
            warn(("topics", "tracker"),
                 f"{cfg.topics.tracker!r} (plugin {table.plugin!r}) files no product tickets: bridge run "
                 "files none (bridge replay and bridge topics still find the spikes); the tracker is a jira "
                 "or linear system (or a plugin that carries the kind topic)")
        elif "topic" not in table.kinds:
            err(("topics", "tracker"), f"{cfg.topics.tracker!r} does not carry topics: add \"topic\" to "
                                       f"connectors.{cfg.topics.tracker}.kinds")
        elif not table.enabled:
            warn(("topics", "tracker"), f"{cfg.topics.tracker!r} is disabled: no product ticket is filed")
        elif not cfg.topics.rules:
            warn(("topics", "rules"), "no rules: no spike is found, and no product ticket filed in "
                                      f"{cfg.topics.tracker!r}")
    agents = {a.email.casefold() for a in cfg.agents}  # emails match without case, as routing matches them
    for name, team in cfg.teams.items():
        for i, member in enumerate(team.members):
            if member.casefold() not in agents:
                warn(("teams", name, "members", i), f"{member!r} is not one of the [[agents]]")
        if team.calendar and team.calendar not in cfg.calendars:
            err(("teams", name, "calendar"), f"calendar {team.calendar!r} is not defined in [calendars]")
    emails: dict[str, int] = {}
    for i, agent in enumerate(cfg.agents):
        folded = agent.email.casefold()  # Alice@Example.com and alice@example.com are one agent
        if folded in emails:
            err(
                ("agents", i, "email"),
                f"agent {agent.email!r} is listed twice (also agents.{emails[folded]})",
            )
        emails.setdefault(folded, i)
        if agent.calendar and agent.calendar not in cfg.calendars:
            err(("agents", i, "calendar"), f"calendar {agent.calendar!r} is not defined in [calendars]")
        if agent.capacity < 0:
            err(("agents", i, "capacity"), "capacity cannot be negative")
    # (one problem found by two checks, such as a plugin key of the wrong type, is said once)
    return Report(list(dict.fromkeys(sink.errors)), list(dict.fromkeys(sink.warnings)))


class _Sink:
    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def err(self, key: tuple[str | int, ...], msg: str) -> None:
        if not self.loaded.is_set_aside(*key):
            self.errors.append(f"{self.loaded.where(*key)}: {msg}")

    def warn(self, key: tuple[str | int, ...], msg: str) -> None:
        if not self.loaded.is_set_aside(*key):
            self.warnings.append(f"{self.loaded.where(*key)}: warning: {msg}")


Emit = Callable[[tuple[str | int, ...], str], None]


def _check_database(url: str, err: Emit, warn: Emit) -> None:
    from bridge.errors import StoreError
    from bridge.store.store import parse_url, sqlite_file

    try:
        file = sqlite_file(parse_url(url))
    except StoreError as exc:
        err(("bridge", "database"), str(exc))
        return
    if file is not None and not file.parent.is_dir():
        # a warning: the folder may exist only on the machine that runs the daemon
        warn(("bridge", "database"), f"no such folder here: {file.parent}{_relative(file.parent)}")


def _relative(path: Path) -> str:
    """`` (relative to CWD)`` for a relative path, read from the working directory as bridge reads it."""
    return "" if path.is_absolute() else f" (relative to {Path.cwd()})"


def _unwritable_statuses(cfg: Config, settings: Any) -> list[str]:
    """The ticket statuses the rules write (a rule's ``set``, auto-close) that a connector mapping its
    vendor's statuses (``statuses``) has none of its own for."""
    mapped = getattr(settings, "statuses", None)
    if not isinstance(mapped, dict):
        return []
    written = {str(action["set"]["status"]) for rule in cfg.rules if rule.enabled for action in rule.then
               if isinstance(action, Mapping) and isinstance(action.get("set"), Mapping)
               and "status" in action["set"]}
    if cfg.auto_close is not None:
        written.add("closed")
    return sorted(written - set(mapped.values()))


def _unmapped_effects(cfg: Config, settings: Any) -> list[str]:
    """The effects this config's rules tell a helpdesk whose connector maps them to fields it names
    (``effect_properties``: HubSpot's, ``effect_fields``: Salesforce's) that it leaves out."""
    mapped = getattr(settings, "effect_properties", getattr(settings, "effect_fields", None))
    if not isinstance(mapped, dict):
        return []
    verbs = {verb for rule in cfg.rules if rule.enabled for action in rule.then if isinstance(action, Mapping)
             for verb in action}
    made = {
        "escalation": "escalate" in verbs or any(p.escalate for p in cfg.sla),
        "follow_up": cfg.follow_up is not None,
        # (a classification not confident enough goes to review: only where keywords classify)
        "review": "review" in verbs or bool(cfg.classify.keywords),
        "notify": "notify" in verbs or bool(cfg.agents) or bool(cfg.teams),  # (the volume trigger's check-in)
        "tags": "add_tags" in verbs or "remove_tags" in verbs,
        "sla": bool(cfg.sla),
    }
    return [effect for effect, yes in made.items() if yes and effect not in mapped]


def _keyless_kinds(cfg: Config, system: str, settings: Any) -> list[str]:
    """The kinds a field is synced to ``system`` for whose connector upserts on a key it names per kind
    (HubSpot's ``id_property``, Salesforce's ``external_id_field``) and names none: a record the system does
    not hold cannot be made there, and its writes are skipped."""
    keys = getattr(settings, "id_property", getattr(settings, "external_id_field", None))
    if not isinstance(keys, dict):
        return []
    synced = {f.kind for f in cfg.fields.values() if system in f.sync_to}
    carried = set(cfg.connectors[system].kinds)
    return sorted(k for k in synced & carried if k not in keys)


def _check_connectors(loaded: LoadedConfig, host: PluginHost | None, sink: _Sink) -> None:
    err, warn = sink.err, sink.warn
    cfg = loaded.config
    secret_env = cfg.bridge.webhook_secret_env
    if secret_env and pasted_secret(secret_env):
        err(("bridge", "webhook_secret_env"), pasted_problem("secret"))
    elif secret_env and not os.environ.get(secret_env) and cfg.bridge.webhook_secret is None:
        # a warning: the variable may be set only where the daemon runs (its HTTP server refuses to start
        # without); `bridge run --once` serves no HTTP and does not need it
        what = ("the daemon (bridge run without --once) will not start; bridge run --once serves no webhooks "
                "and runs" if cfg.bridge.serve else "unused while serve = false")
        warn(("bridge", "webhook_secret_env"), f"${secret_env} is not set here: {what}")
    secret_file = cfg.bridge.webhook_secret_file
    if secret_file and not secret_env and cfg.bridge.webhook_secret is None:
        try:
            readable = bool(Path(secret_file).read_text(encoding="utf-8-sig").strip())
            why = "it is empty"
        except (OSError, UnicodeDecodeError) as exc:
            readable, why = False, str(exc.strerror) if isinstance(exc, OSError) else "not UTF-8 text"
        if not readable:
            what = ("the daemon (bridge run without --once) will not start" if cfg.bridge.serve
                    else "unused while serve = false")
            warn(("bridge", "webhook_secret_file"),
                 f"cannot read the secret file it names here ({why}): {what}")
    _secret_in_file(loaded, ("bridge", "webhook_secret"), warn)
    installed = host.connectors() if host is not None else {}
    for name, table in cfg.connectors.items():
        if loaded.is_set_aside("connectors", name):
            continue
        if host is not None and table.plugin not in installed:
            known = ", ".join(sorted(installed)) or "none"
            err(
                ("connectors", name, "plugin"),
                f"plugin {table.plugin!r} is not installed (installed: {known})",
            )
            continue
        for key, reason in table.missing_secrets.items():
            # a variable not set is a warning (it may be set only where the daemon runs); a value that cannot
            # name one is not
            bad = reason.startswith((NOT_AN_ENV_NAME, WRONG_TYPE))  # (else a variable or file missing here)
            (err if bad else warn)(("connectors", name, key), reason)
        if table.ca_bundle and not Path(table.ca_bundle).is_file():
            # a warning: the file may live only on the machine that runs the daemon
            warn(("connectors", name, "ca_bundle"), f"no such file here: {table.ca_bundle}")
        cls = installed.get(table.plugin)
        if cls is None:
            continue
        raw = _raw_table(loaded, name)
        if "_missing_secrets" in raw:  # (bridge's own note, read from the file it would pass for one)
            err(("connectors", name, "_missing_secrets"), "unknown key")
        _check_numbers(cls.settings_model, raw, ("connectors", name), err)
        for key, info in cls.settings_model.model_fields.items():
            if _is_secret(info.annotation):
                _secret_in_file(loaded, ("connectors", name, key), warn)
        data = {k: v for k, v in table.model_dump(by_alias=True, exclude_unset=True).items()
                if k != "_missing_secrets"}
        data["kinds"] = list(table.kinds)  # (as the core holds them: App.connector hands them so)
        data.update(table.model_extra or {})
        refs = {k: v for k, v in raw.items() if k.endswith("_env") or k.endswith("_file")}
        for ref in refs:  # (resolved again below, by the plugin's model: a misspelt one is one unknown key)
            bare = ref.rsplit("_", 1)[0]
            if bare not in raw and env_source(("connectors", name, bare)) is None:
                data.pop(bare, None)
        data.update(refs)
        data = env_text(cls.settings_model, data, name)
        try:
            settings = cls.settings_model(**data)
        except ValidationError as exc:
            where = ("connectors", name)
            for line in validation_problems(exc, loaded.path, loaded.lines, where, cls.settings_model):
                if "Field required" in line and any(
                    line.split(": ")[1].endswith("." + k.rsplit("_", 1)[0]) for k in table.missing_secrets
                ):
                    continue  # already warned: the secret's variable is not set here
                sink.errors.append(line)
        else:
            if isinstance(settings, FilesSettings) and not Path(settings.path).exists():
                # a warning: the folder may exist only where the daemon runs (or be made before it does)
                warn(("connectors", name, "path"), missing_path(Path(settings.path)))
            helpdesk = "ticket" in table.kinds and table.enabled  # (a system switched off is told nothing)
            unwritable = _unwritable_statuses(cfg, settings) if helpdesk else []
            if unwritable:
                warn(("connectors", name, "statuses"),
                     f"no {table.plugin} status is mapped to {', '.join(map(repr, unwritable))}, which the "
                     f"rules write (a rule's set, auto-close): each such write is refused to the dead letter")
            unmapped = _unmapped_effects(cfg, settings) if helpdesk else []
            if unmapped:
                key = "effect_properties" if hasattr(settings, "effect_properties") else "effect_fields"
                warn(("connectors", name, key),
                     f"the {table.plugin} tickets have no property for {', '.join(unmapped)}, which the "
                     f"rules tell the helpdesk: each is refused to the dead letter (tags: left out of their "
                     f"write) until {key} names a ticket field for it")
            keyless = _keyless_kinds(cfg, name, settings) if table.enabled else []
            if keyless:
                key = "id_property" if hasattr(settings, "id_property") else "external_id_field"
                which = "these kinds" if len(keyless) > 1 else "it"
                warn(("connectors", name, key),
                     f"no {key} for {', '.join(keyless)}: a record of {which} that {name} does not hold yet "
                     f"gets none of the fields synced to it (each write is skipped), until {key} names the "
                     f"unique field to find or make it by")
        if "topic" in table.kinds and name != cfg.topics.tracker:
            warn(("connectors", name), f"{name!r} carries topics but is not the [topics] tracker: it files "
                                       f"no product ticket (set [topics] tracker = \"{name}\")")
        unsupported = [k for k in table.kinds if k not in cls.kinds]
        if unsupported:
            err(
                ("connectors", name, "kinds"),
                f"plugin {table.plugin!r} does not carry {', '.join(unsupported)} "
                f"(it carries {', '.join(cls.kinds)})",
            )


def _is_secret(annotation: Any) -> bool:
    """Whether a settings key is typed as a secret (``SecretStr``, or ``SecretStr | None``)."""
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def _secret_in_file(loaded: LoadedConfig, key: tuple[str, ...], warn: Emit) -> None:
    """Warn of a secret written in the file itself (never repeating it); from a variable it is where it
    belongs."""
    if key in loaded.lines and env_source(key) is None:
        bare = key[-1]
        instead = f"{bare}_env (an environment variable) or {bare}_file (a file)"
        warn(key, f"a secret written in the file: use {instead} instead (the value is not shown)")


def _file_data(loaded: LoadedConfig) -> dict[str, Any]:
    """The config as the file alone has it (no ``BRIDGE_*`` variable laid over it)."""
    import tomllib

    try:
        return tomllib.loads(loaded.path.read_text(encoding="utf-8-sig"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _raw_table(loaded: LoadedConfig, name: str) -> dict[str, Any]:
    connectors = _file_data(loaded).get("connectors", {})
    table = connectors.get(name, {}) if isinstance(connectors, dict) else {}
    return table if isinstance(table, dict) else {}


def _number_kind(annotation: Any) -> str | None:
    """``"a whole number"`` for an int setting, ``"a number"`` for a float one, ``"true or false"`` for a
    boolean one (optional or not), or None."""
    args = set(typing.get_args(annotation)) - {type(None)} if typing.get_origin(annotation) else {annotation}
    if args == {bool}:
        return "true or false"
    if args == {int}:
        return "a whole number"
    if args in ({float}, {int, float}):
        return "a number"
    return None


def _check_numbers(model: type[BaseModel], data: Any, key: tuple[str, ...], err: Emit) -> None:
    """A number written in the file as text (``priority = "10"``), or a whole number as a boolean or a
    fraction: pydantic's lax mode reads them, but they are surely mistakes. (A variable's value is always
    text: :func:`_check_env_values` reads those.)"""
    if not isinstance(data, dict):
        return
    for name, value in data.items():
        info = model.model_fields.get(name)
        if info is None:
            continue
        where = (*key, name)
        kind = _number_kind(info.annotation)
        if kind is not None:
            whole = kind == "a whole number"
            if kind == "true or false":  # ("off", "no", 0: pydantic reads them; a system quietly off)
                wrong = not isinstance(value, bool)
            else:
                wrong = isinstance(value, str | bool) or (whole and isinstance(value, float))
            if wrong and env_source(where) is None:
                quoted = isinstance(value, str) and kind != "true or false" and _is_number(value)
                hint = f" (write {value} without quotes)" if quoted else ""
                shown = str(value).lower() if isinstance(value, bool) else repr(value)
                err(where, f"{name} takes {kind}, got {shown}{hint}")
            continue
        for sub, items in _submodels(info.annotation, value):
            for index, item in items:
                _check_numbers(sub, item, (*where, *index), err)


def _check_env_values(err: Emit) -> None:
    """A ``BRIDGE_*`` variable's text must spell the number or the ``true``/``false`` its key takes (pydantic
    would read ``off``, ``no`` or ``18799.0`` and quietly turn a system off or a port into a number)."""
    for var, text in os.environ.items():
        if not var.upper().startswith("BRIDGE_") or "__" not in var:
            continue
        loc = tuple(part.lower() for part in var[len("BRIDGE_"):].split("__"))
        kind = _kind_at(Config, loc)
        if kind is None:
            continue
        spelled = text.strip().lower()
        if kind == "true or false":
            wrong = spelled not in ("true", "false")
        elif kind == "a whole number":
            wrong = re.fullmatch(r"[+-]?\d+", spelled) is None
        else:
            wrong = not _is_number(spelled)
        if wrong:
            err(loc, f"{loc[-1]} takes {kind}, got {text!r}")


def _kind_at(model: type[BaseModel], loc: tuple[str, ...]) -> str | None:
    """What the key at ``loc`` under ``model`` takes when it is a number or a yes-or-no (else None)."""
    info = model.model_fields.get(loc[0]) if loc else None
    if info is None:
        return None
    if len(loc) == 1:
        return _number_kind(info.annotation)
    for arg in (info.annotation, *typing.get_args(info.annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return _kind_at(arg, loc[1:])
        inner = typing.get_args(arg)
        if typing.get_origin(arg) is list and inner and isinstance(inner[0], type) and issubclass(
                inner[0], BaseModel) and len(loc) > 2 and loc[1].isdigit():
            return _kind_at(inner[0], loc[2:])  # (BRIDGE_RULES__0__ENABLED: a list's entry by its index)
        if typing.get_origin(arg) is dict and len(inner) == 2 and isinstance(inner[1], type) and issubclass(
                inner[1], BaseModel) and len(loc) > 2:
            return _kind_at(inner[1], loc[2:])
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _submodels(
    annotation: Any, value: Any
) -> Iterator[tuple[type[BaseModel], list[tuple[tuple[str, ...], Any]]]]:
    """The config tables inside ``value`` by their model: a table, a list of tables or a table of tables."""
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            yield arg, [((), value)]
        origin, inner = typing.get_origin(arg), typing.get_args(arg)
        if origin is list and inner and isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
            items = value if isinstance(value, list) else []
            yield inner[0], [((str(i),), v) for i, v in enumerate(items)]
        tables = origin is dict and len(inner) == 2
        if tables and isinstance(inner[1], type) and issubclass(inner[1], BaseModel):
            table = value if isinstance(value, dict) else {}
            yield inner[1], [((str(k),), v) for k, v in table.items()]


def _check_fields(cfg: Config, systems: set[str], kinds: set[str], err: Emit, warn: Emit) -> None:
    for name, f in cfg.fields.items():
        if f.type not in FIELD_TYPES:
            err(
                ("fields", name, "type"),
                f"unknown field type {f.type!r}; expected one of {', '.join(FIELD_TYPES)}",
            )
            continue
        if f.type in ("select", "multi_select") and not f.options:
            err(("fields", name, "options"), f"a {f.type} field needs options")
        if f.options and f.type not in ("select", "multi_select"):
            err(("fields", name, "options"), f"a {f.type} field takes no options")
        for opt in f.aliases:
            if opt not in f.options:
                err(("fields", name, "aliases", opt), f"alias target {opt!r} is not an option of this field")
        if f.kind not in kinds:
            err(("fields", name, "kind"), f"unknown kind {f.kind!r}; known kinds: {', '.join(sorted(kinds))}")
        if f.owner != BRIDGE and f.owner not in systems:
            err(("fields", name, "owner"), f"owner {f.owner!r} is not a configured connector (or 'bridge')")
        for i, target in enumerate(f.sync_to):
            if target not in systems:
                err(("fields", name, "sync_to", i), f"system {target!r} is not a configured connector")
            elif f.kind not in cfg.connectors[target].kinds:
                warn(
                    ("fields", name, "sync_to", i),
                    f"{target!r} does not carry {f.kind} records (its kinds: "
                    f"{', '.join(cfg.connectors[target].kinds)}): it will receive nothing of this field",
                )
            elif target == f.owner:
                warn(("fields", name, "sync_to", i), f"{target!r} owns this field; it needs no sync_to")
        for system in f.remote:
            if system not in systems:
                err(("fields", name, "remote", system), f"system {system!r} is not a configured connector")


def _foreign_owner(cfg: Config, name: str) -> str | None:
    """The system that owns a declared field, when that is not the bridge (an owner that is no configured
    connector is reported at the field)."""
    owner = cfg.fields[name].owner
    return owner if owner != BRIDGE and owner in cfg.connectors else None


# topics of every usual shape, to tell a prefix the taxonomy pattern can never match
_SAMPLE_TOPICS = (
    "refund", "a", "sso", "login-error", "sev1", "v2", "api_key", "Refund", "refund request", "x.y")


def _check_tags(cfg: Config, unjudged: set[str], err: Emit, warn: Emit) -> None:
    types = cfg.field_types()
    for i, mapping in enumerate(cfg.tags):
        for field, value in mapping.set.items():
            ft = types.get(field)
            if field not in cfg.fields:
                err(("tags", i, "set", field), f"field {field!r} is not declared in [fields]")
                continue
            if (owner := _foreign_owner(cfg, field)) is not None:
                # the pipeline maps tags onto fields the bridge owns only: this mapping would never set it
                err(
                    ("tags", i, "set", field),
                    f"field {field!r} is owned by {owner!r}: tags only set fields the bridge owns "
                    '(owner = "bridge")',
                )
                continue
            if field in unjudged or ft is None:
                continue
            try:
                coerce(ft, value)
            except FieldValueError as exc:
                err(("tags", i, "set", field), str(exc).removeprefix(f"field {field!r}: "))
    try:
        pattern = re.compile(cfg.taxonomy.pattern)
    except re.error as exc:
        err(("taxonomy", "pattern"), f"not a regular expression: {exc}")
        return
    for table, prefixes in (("taxonomy", cfg.taxonomy.prefixes), ("topics", cfg.topics.prefixes)):
        for i, prefix in enumerate(prefixes):
            # (a pattern cannot be solved in general: a prefix none of these topics fits is surely left out of
            # it, as "how-to" is of ^[a-z]+/...: its tags are then never topics, and lint reports every one)
            if not any(pattern.fullmatch(f"{prefix}/{topic}") for topic in _SAMPLE_TOPICS):
                warn((table, "prefixes", i),
                     f"no tag of prefix {prefix!r} matches [taxonomy] pattern {cfg.taxonomy.pattern!r} "
                     f"({prefix}/refund does not): its tags are never topics, and taxonomy lint reports each")


def _check_calendars(loaded: LoadedConfig, err: Emit) -> None:
    from bridge.rules.calendar import validate_calendar

    cfg = loaded.config
    for name, cal in cfg.calendars.items():
        # parts that did not validate were reported already: no second problem of them ("no open hours")
        aside = {p[2:] for p in loaded.set_aside if p[:2] == ("calendars", name)}
        for ckey, msg in validate_calendar(name, cal, set_aside=aside, default_tz=cfg.bridge.timezone):
            err(("calendars", name, *ckey), msg)


def _check_slas(cfg: Config, err: Emit, warn: Emit) -> None:
    names: dict[str, int] = {}
    weeks: dict[str, timedelta | None] = {}
    for i, sla in enumerate(cfg.sla):
        if sla.name in names:
            err(("sla", i, "name"), f"SLA name {sla.name!r} is used twice (also sla.{names[sla.name]})")
        names.setdefault(sla.name, i)
        if sla.calendar and sla.calendar not in cfg.calendars:
            err(("sla", i, "calendar"), f"calendar {sla.calendar!r} is not defined in [calendars]")
        if "when" in sla.model_fields_set and not sla.when:
            err(("sla", i, "when"), f"{EMPTY_WHEN} for a policy on every ticket")
        _report_condition(cfg, sla.when, ("sla", i, "when"), err, warn)
        for j, status in enumerate(sla.pause_on):
            if status not in TICKET_STATUSES:
                err(
                    ("sla", i, "pause_on", j),
                    f"unknown status {status!r}; expected one of {', '.join(TICKET_STATUSES)}",
                )
        for j, level in enumerate(sla.escalate):
            if level.to not in cfg.teams:
                err(("sla", i, "escalate", j, "to"), f"team {level.to!r} is not defined in [teams]")
        if sla.warn_before is not None:
            early = parse_duration(sla.warn_before)
            late = [
                f"{b} ({getattr(sla, b)})"
                for b in METRICS
                if getattr(sla, b) is not None and early >= parse_duration(getattr(sla, b))
            ]
            if late:
                warn(
                    ("sla", i, "warn_before"),
                    f"warn_before {sla.warn_before} is not shorter than {', '.join(late)}: "
                    "that warning can never fire",
                )
        if sla.calendar in cfg.calendars:
            if sla.calendar not in weeks:
                weeks[sla.calendar] = _open_week(cfg.calendars[sla.calendar], cfg.bridge.timezone)
            _check_sla_reach(sla, weeks[sla.calendar], ("sla", i), err)


# An SLA's deadlines are found by walking its calendar's open time: on a calendar open a few minutes a week,
# even a budget within the bound of a duration ends past the year 9999 and crashes the rules at run time.
MAX_DEADLINE_YEARS = 100


def _open_week(cal: CalendarConfig, default_tz: str) -> timedelta | None:
    """A calendar's average open time a week, holidays included; None when it does not validate (that is
    reported by the calendar's own check)."""
    from bridge.rules.calendar import BusinessCalendar

    try:
        return BusinessCalendar.from_config(cal, default_tz).typical_week()
    except ValueError:
        return None


def _check_sla_reach(
    sla: SlaConfig, open_week: timedelta | None, where: tuple[str | int, ...], err: Emit
) -> None:
    """An error when the SLA's longest budget, with its last escalation, ends too far away on its calendar,
    which is open ``open_week`` a week on average."""
    budgets = [(parse_duration(text), metric, text) for metric in METRICS if (text := getattr(sla, metric))]
    if not open_week or not budgets:
        return  # a calendar with no open hours (or that does not validate) is reported as such
    longest, metric, text = max(budgets)
    last = max((parse_duration(level.after) for level in sla.escalate), default=timedelta(0))
    # each minute of open time takes (a week / open time a week) minutes of wall time
    years = (longest + last) * (timedelta(weeks=1) / open_week) / timedelta(days=365.25)
    if years > MAX_DEADLINE_YEARS:
        then = f" and an escalation {format_duration(last)} after it" if last else ""
        shown = timedelta(minutes=max(round(open_week / timedelta(minutes=1)), 1))
        err(
            (*where, metric),
            f"{metric} {text}{then} of open time ends about {years:,.0f} years later on calendar "
            f"{sla.calendar!r} (open {format_duration(shown)} a week, holidays included); a deadline "
            f"is at most {MAX_DEADLINE_YEARS} years away",
        )


def _field_known(cfg: Config, path: str) -> str | None:
    root, _, attr = path.partition(".")
    fields_of = {n for n, f in cfg.fields.items()}
    if root == "ticket":
        ok = attr in TICKET_ATTRS or (attr in fields_of and cfg.fields[attr].kind == "ticket")
    elif root == "account":
        ok = attr in ACCOUNT_ATTRS or (attr in fields_of and cfg.fields[attr].kind == "account")
    elif root == "requester":
        ok = attr in REQUESTER_ATTRS or (attr in fields_of and cfg.fields[attr].kind == "contact")
    else:
        return f"unknown path {path!r}: it must start with ticket., account. or requester."
    if not ok:
        return f"unknown field {path!r}: not a built-in attribute nor a declared [fields] entry of that kind"
    return None


def _leaves(cond: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    if isinstance(cond, Mapping):
        groups = [k for k in ("all", "any", "none") if k in cond]
        if groups:
            for g in groups:
                items = cond[g]
                if isinstance(items, list):
                    for i, item in enumerate(items):
                        yield from _leaves(item, (*path, g, i))
                else:
                    yield (*path, g), items
            return
    yield path, cond


def _numeric_paths(cfg: Config) -> frozenset[str]:
    roots = {"ticket": "ticket", "account": "account", "contact": "requester"}
    declared = {
        f"{roots[f.kind]}.{n}" for n, f in cfg.fields.items() if f.type == "number" and f.kind in roots
    }
    return NUMERIC_PATHS | declared


def _condition_problems(cfg: Config, cond: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if not cond:
        return problems
    from bridge.rules.conditions import validate_condition

    problems.extend(validate_condition(cond))
    reported = {key for key, _msg in problems}
    types = cfg.field_types()
    for path, leaf in _leaves(cond):
        if isinstance(leaf, Mapping) and "field" in leaf and (*path, "field") not in reported:
            msg = _field_known(cfg, str(leaf["field"]))
            if msg:
                problems.append(((*path, "field"), msg))
        if isinstance(leaf, Mapping):
            values = _value_problems(cfg, types, leaf, path)
            problems.extend(p for p in values if p[0][:len(path) + 1] not in reported)
    return problems


PRIORITY_OPS = ("eq", "ne", "lt", "lte", "gt", "gte", "from", "to")
VALUE_OPS = ("eq", "ne", "from", "to")  # the operators that compare with one value (in, not_in: with a list)


def _value_problems(
    cfg: Config, types: Mapping[str, FieldType], leaf: Mapping[str, Any], path: tuple[str | int, ...]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Values a leaf compares with that its path never holds: a priority, a status or an option of a select
    field other than the known ones never equals (so ``eq`` never holds, ``ne`` always does)."""
    field = leaf.get("field")
    if field == "ticket.priority":
        return _priority_problems(leaf, path)
    if field == "ticket.status":
        return [(key, msg) for key, value in _compared(leaf, path, False) if (msg := _status_problem(value))]
    root, _, name = field.partition(".") if isinstance(field, str) else ("", "", "")
    ft = types.get(name) if root in ("ticket", "account") else None
    # (a built-in ticket attribute of the same name is read when the field is blank: its values are not the
    # options; an account's values are coerced to the options, the ticket's own account as the CRM's)
    if ft is None or ft.type not in ("select", "multi_select") or (root == "ticket" and name in TICKET_ATTRS):
        return []
    if cfg.fields[name].kind != root:
        return []
    multi = ft.type == "multi_select"
    out = [(key, msg) for key, value in _compared(leaf, path, multi)
           if (msg := _option_problem(ft, value, f"an {root}" if root == "account" else "a ticket"))]
    if multi and isinstance(leaf.get("contains"), str):
        # contains on a list: an item equals the value in any letter case (aliases are not read)
        value = leaf["contains"]
        if not any(opt.casefold() == value.casefold() for opt in ft.options):
            msg = _option_problem(ft, value) or f"{value!r} is not an option of this {ft.type}"
            out.append(((*path, "contains"), msg))
    return out


def _compared(
    leaf: Mapping[str, Any], path: tuple[str | int, ...], lists: bool
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """The values a leaf compares its path's value with, each with its key; with ``lists`` (a multi_select),
    the items of a list given to eq, ne, from or to too."""
    for op in VALUE_OPS:
        value = leaf.get(op)
        if lists and isinstance(value, list):
            yield from (((*path, op, i), v) for i, v in enumerate(value))
        elif op in leaf:
            yield (*path, op), value
    for op in ("in", "not_in"):
        if isinstance(leaf.get(op), list):
            yield from (((*path, op, i), v) for i, v in enumerate(leaf[op]))


def _status_problem(value: Any) -> str | None:
    if value in TICKET_STATUSES:
        return None
    if isinstance(value, str) and value.lower() in TICKET_STATUSES:
        hint = f" (write {value.lower()!r})"
    else:
        close = difflib.get_close_matches(str(value), TICKET_STATUSES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown status {value!r}; expected one of {', '.join(TICKET_STATUSES)}{hint}"


def _option_problem(
    ft: FieldType, value: Any, holder: str = "a ticket", compares: str = "a condition compares"
) -> str | None:
    """Why a select field never holds ``value`` (None when it may): the field holds its options as declared,
    which a condition compares as written (``holder``: a ticket, an account)."""
    if not isinstance(value, str) or not value.strip() or value in ft.options:
        return None  # (a blank is the field left empty; other types are judged as the runtime compares them)
    found = ft.option(value)  # in another letter case, or an alias: what a system's value would become
    if found is not None:
        return (
            f"{value!r} never matches: {holder} holds the option {found!r} as declared, and {compares} "
            f"as written (write {found!r})"
        )
    close = difflib.get_close_matches(" ".join(value.split()).casefold(), list(ft.lookup()), n=1, cutoff=0.6)
    hint = f" (did you mean {ft.lookup()[close[0]]!r}?)" if close else ""
    return f"{value!r} is not an option of this {ft.type}{hint}; options: {', '.join(ft.options)}"


def _priority_problems(
    leaf: Mapping[str, Any], path: tuple[str | int, ...]
) -> list[tuple[tuple[str | int, ...], str]]:
    """A priority a leaf on ticket.priority compares with must be one of the known ones: any other (``High``,
    ``Urgent``) never equals a ticket's priority and has no rank to order by."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    values: list[tuple[tuple[str | int, ...], Any]] = [
        ((*path, op), leaf[op]) for op in PRIORITY_OPS if op in leaf
    ]
    for op in ("in", "not_in"):
        if isinstance(leaf.get(op), list):
            values.extend(((*path, op, i), v) for i, v in enumerate(leaf[op]))
    for key, value in values:
        if value in PRIORITIES:
            continue
        hint = f" (write {value.lower()!r})" if isinstance(value, str) and value.lower() in PRIORITIES else ""
        out.append((key, f"unknown priority {value!r}; expected one of {', '.join(PRIORITIES)}{hint}"))
    return out


def _condition_warnings(cfg: Config, cond: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Legal conditions that surely do not mean what they say."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    numeric = _numeric_paths(cfg)
    for path, leaf in _leaves(cond):
        glob = leaf.get("tag") if isinstance(leaf, Mapping) else None
        if isinstance(glob, str) and glob != glob.lower():
            # (a [[tags]] match ignores letter case; a rule's glob does not, and tags are mostly lower case)
            out.append(((*path, "tag"), f"tag globs in rules compare letter case as written: {glob!r} never "
                                        f"matches {glob.lower()!r} (write it as the tags are written)"))
        # (a field that is not a path string is an error reported by validate_condition)
        field = leaf.get("field") if isinstance(leaf, Mapping) else None
        if not isinstance(field, str) or field not in numeric:
            continue
        for op in ORDER_OPS:
            value = leaf.get(op)
            if not isinstance(value, str):
                continue
            try:
                float(value)
            except ValueError:
                why = "it is not a number"
            else:
                why = f"write {value} without quotes"
            out.append(((*path, op), f"{leaf['field']} is a number and {op} {value!r} never holds ({why})"))
    return out


def _report_condition(
    cfg: Config, cond: Mapping[str, Any], where: tuple[str | int, ...], err: Emit, warn: Emit
) -> None:
    for key, msg in _condition_problems(cfg, cond):
        err((*where, *key), msg)
    for key, msg in _condition_warnings(cfg, cond):
        warn((*where, *key), msg)


def _shape(value: Any) -> str:
    kinds = {list: "a list", dict: "a table", bool: "a boolean", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


@dataclass
class _Actions:
    """The checks of a rule's actions, by verb: each value must have the shape the engine reads, because the
    engine coerces whatever it gets (a list's text as a team name, a table's keys as tags) without a word."""

    cfg: Config
    teams: set[str]
    agents: set[str]  # casefolded: emails match without case, as routing matches them
    unjudged: set[str]  # fields whose type or options did not validate (see check_config)
    err: Emit
    warn: Emit

    def check(self, verb: str, arg: Any, where: tuple[str | int, ...]) -> None:
        """Report the problems of one action ``verb = arg`` written at ``where``."""
        checks: dict[str, Callable[[Any, tuple[str | int, ...]], None]] = {
            "escalate": self.team,
            "assign": self.assign,
            "notify": self.notify,
            "set": self.set,
            "add_tags": self.tags,
            "remove_tags": self.tags,
            "review": self.review,
        }
        if verb not in checks:
            self.err(where, f"unknown action {verb!r}")
        else:
            checks[verb](arg, where)

    def team(self, value: Any, where: tuple[str | int, ...]) -> None:
        if not isinstance(value, str):
            self.err(where, f"{where[-1]} takes a team name (a string), got {_shape(value)}")
        elif value not in self.teams:
            self.err(where, f"team {value!r} is not defined in [teams]")

    def assign(self, arg: Any, where: tuple[str | int, ...]) -> None:
        if not isinstance(arg, Mapping):
            self.err(where, "assign takes a table: { skill | language | agent | team = ... }")
            return
        for key, value in arg.items():
            if key not in ASSIGN_KEYS:
                self.err((*where, key), f"unknown key {key!r} in assign; expected {', '.join(ASSIGN_KEYS)}")
            elif not isinstance(value, str):
                self.err((*where, key), f"assign {key} takes a string, got {_shape(value)}")
            elif key == "agent" and value.casefold() not in self.agents:
                self.err((*where, key), f"agent {value!r} is not one of the [[agents]]")
            elif key == "team":
                self.team(value, (*where, key))
            elif key in ("skill", "language"):
                self.agent_has(key, value, (*where, key))

    def agent_has(self, key: str, value: str, where: tuple[str | int, ...]) -> None:
        # a warning, not an error: a ticket no agent fits waits in the queue, as documented
        known = {x for a in self.cfg.agents for x in (a.skills if key == "skill" else a.languages)}
        if value in known or (key == "skill" and value.casefold() in {x.casefold() for x in known}):
            return  # (a skill matches in any letter case)
        close = difflib.get_close_matches(value, sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.warn(
            where, f"no [[agents]] entry has {key} {value!r}{hint}: a ticket it routes waits in the queue"
        )

    def notify(self, arg: Any, where: tuple[str | int, ...]) -> None:
        if isinstance(arg, str):
            return
        if not isinstance(arg, Mapping):
            self.err(where, "notify takes a recipient or a table { to = ..., message = ... }")
            return
        for key, value in arg.items():
            if key not in NOTIFY_KEYS:
                expected = " and ".join(NOTIFY_KEYS)
                self.err((*where, key), f"unknown key {key!r} in notify; expected {expected}")
            elif not isinstance(value, str):
                what = "one recipient (a string: one notify per recipient)" if key == "to" else "a string"
                self.err((*where, key), f"notify {key} takes {what}, got {_shape(value)}")
        if "to" not in arg:
            self.err(where, "notify needs to = RECIPIENT")

    def tags(self, arg: Any, where: tuple[str | int, ...]) -> None:
        if isinstance(arg, str):
            self._capitals(arg, where)
            return
        if not isinstance(arg, list):
            self.err(where, f"{where[-1]} takes a tag or a list of tags, got {_shape(arg)}")
            return
        for k, tag in enumerate(arg):
            if not isinstance(tag, str):
                self.err((*where, k), f"a tag is a string, got {_shape(tag)} {tag!r}")
            else:
                self._capitals(tag, (*where, k))

    def _capitals(self, tag: str, where: tuple[str | int, ...]) -> None:
        # (as for a rule's tag glob: tags compare letter case as written, and are mostly lower case)
        if tag != tag.lower():
            verb = "adds" if "add_tags" in where else "removes"
            self.warn(where, f"{verb} {tag!r} as written: tags compare letter case as written, so it is "
                             f"not {tag.lower()!r} (rules' globs and other tags miss it; write it in lower "
                             f"case)")

    def review(self, arg: Any, where: tuple[str | int, ...]) -> None:
        # the engine takes a string as the reason and anything else as none (the rule's name)
        if not isinstance(arg, str) and arg is not True:
            self.err(where, f"review takes a reason (a string) or true, got {_shape(arg)}")

    def set(self, arg: Any, where: tuple[str | int, ...]) -> None:
        if not isinstance(arg, Mapping):
            self.err(where, "set takes a table of field = value")
            return
        if not arg:
            self.warn(where, "set = {} sets nothing: the action does nothing")
        for field, value in arg.items():
            key = (*where, field)
            if field == "priority" and value not in PRIORITIES:
                self.err(key, f"unknown priority {value!r}; expected one of {', '.join(PRIORITIES)}")
            elif field == "status" and value not in TICKET_STATUSES:
                self.err(key, f"unknown status {value!r}; expected one of {', '.join(TICKET_STATUSES)}")
            elif field == "team":
                self.team(value, key)
            elif field == "assignee" and not isinstance(value, str):
                self.err(key, f"assignee takes an email (a string), got {_shape(value)}")
            if field not in ("priority", "status", "assignee", "team"):
                self.field(field, value, key)

    def field(self, name: str, value: Any, key: tuple[str | int, ...]) -> None:
        cfg = self.cfg
        ft = cfg.field_types().get(name)
        owner = _foreign_owner(cfg, name) if name in cfg.fields else None
        if name not in cfg.fields:
            self.err(key, f"field {name!r} is not declared in [fields]")
        elif cfg.fields[name].kind != "ticket":
            kind = cfg.fields[name].kind
            self.err(key, f"field {name!r} is of kind {kind!r}: a rule sets fields of the ticket only")
        elif owner is not None and cfg.fields[name].policy == "owner_wins":
            # under the other policies the owner lets others write (while blank, into an empty field, newest)
            self.err(
                key,
                f"field {name!r} is owned by {owner!r} (policy owner_wins): a sync never overwrites the "
                'owner, so what a rule sets there does not stand; give the field owner = "bridge" or a '
                "policy that lets others write",
            )
        elif name in self.unjudged or ft is None:
            return
        else:
            try:
                coerce(ft, value)
            except FieldValueError as exc:
                self.err(key, str(exc).removeprefix(f"field {name!r}: "))


def _set_paths(then: list[Any]) -> set[str]:
    """The ticket paths a rule's ``set`` actions write."""
    return {f"ticket.{key}" for action in then if isinstance(action, Mapping)
            and isinstance(action.get("set"), Mapping) for key in action["set"] if isinstance(key, str)}


def _check_rules(cfg: Config, unjudged: set[str], err: Emit, warn: Emit) -> None:
    actions = _Actions(cfg, set(cfg.teams), {a.email.casefold() for a in cfg.agents}, unjudged, err, warn)
    names: dict[str, int] = {}
    for i, rule in enumerate(cfg.rules):
        if rule.name in names:
            err(
                ("rules", i, "name"), f"rule name {rule.name!r} is used twice (also rules.{names[rule.name]})"
            )
        names.setdefault(rule.name, i)
        if "when" in rule.model_fields_set and not rule.when:
            # like all = [], an empty table is surely unfinished: a rule on every ticket leaves when out
            err(("rules", i, "when"), f"{EMPTY_WHEN} for a rule on every ticket")
        _report_condition(cfg, rule.when, ("rules", i, "when"), err, warn)
        if not rule.then:
            warn(("rules", i, "then"), "the rule has no actions: it does nothing")
        own = sorted(_set_paths(rule.then) & paths_read(rule.when))
        if own and rule.enabled:
            # (the Zendesk habit of guarding a trigger on what it sets, so that it does not loop: here it
            # makes the rule overrule the person who changes the value back)
            warn(("rules", i, "when"),
                 f"reads {', '.join(own)}, which its own set writes: a person who changes it back makes the "
                 f"condition start to hold again, and the rule sets it again. A rule fires once when its "
                 f"condition starts to hold, so the guard is not needed to stop it repeating; leave it out")
        for j, action in enumerate(rule.then):
            if not isinstance(action, Mapping) or len(action) != 1:
                err(
                    ("rules", i, "then", j),
                    "an action is a table with exactly one of assign, escalate, set, "
                    "add_tags, remove_tags, notify, review",
                )
                continue
            ((verb, arg),) = action.items()
            actions.check(verb, arg, ("rules", i, "then", j, verb))

    from bridge.rules.engine import rule_cycles

    # rule_cycles takes any field leaf on the tags as fed by every tag change; one that looks for given tags
    # (eq, in) is fed only as a tag glob naming them is, so it is read as such globs
    globbed = [r.model_copy(update={"when": _tag_leaves_as_globs(r.when)}) for r in cfg.rules]
    for cycle in rule_cycles(cfg.model_copy(update={"rules": globbed})):
        warn(_cycle_key(cfg, cycle), f"rule cycle: {cycle}")


def _check_tier_order(cfg: Config, unjudged: set[str], err: Emit) -> None:
    """``[routing] tier_order`` against the options of a declared account ``tier`` select: a tier that is no
    option never ranks a ticket, whose account holds the options as declared."""
    declared = cfg.fields.get("tier")
    if declared is None or declared.kind != "account" or "tier" in unjudged:
        return
    ft = cfg.field_types().get("tier")
    if ft is None or ft.type != "select":
        return
    for i, value in enumerate(cfg.routing.tier_order):
        if msg := _option_problem(ft, value, "an account", "the queue compares"):
            err(("routing", "tier_order", i), msg)


def _literal_glob(tag: str) -> str:
    """A glob that matches ``tag`` only."""
    return re.sub(r"([*?\[])", r"[\1]", tag)


def _tag_leaves_as_globs(cond: Any) -> Any:
    """``cond`` with its leaves on ``ticket.tags`` that look for given tags written as tag globs, for the
    cycle search.

    ``in [a, b]`` holds when the ticket has tag a or b: ``any = [{tag = a}, {tag = b}]``; ``eq "a"`` when it
    has a; ``not_in`` and ``ne "a"`` are the same under ``none``; ``eq [a, b]`` when it has exactly those: an
    added a or b, or any tag removed, can make it start to hold, as
    ``all = [{any = [{tag = a}, {tag = b}]}, {none = [{tag = "*"}]}]`` says to the search (under ``none``,
    where a leaf helps by failing, the same globs say the opposite, as they should). A leaf with anything else
    (other operators, values that are not tags) is left as it is: fed by every tag change.
    """
    if not isinstance(cond, Mapping):
        return cond
    if cond.get("field") == "ticket.tags" and len(cond) == 2:
        op, value = next((k, v) for k, v in cond.items() if k != "field")
        if op in ("eq", "ne") and isinstance(value, str):
            leaf = {"tag": _literal_glob(value)}
            return leaf if op == "eq" else {"none": [leaf]}
        items = value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None
        if op in ("in", "not_in") and items:
            globs = [{"tag": _literal_glob(v)} for v in items]
            return {"any": globs} if op == "in" else {"none": globs}
        if op == "eq" and items is not None:
            removed = {"none": [{"tag": "*"}]}
            if not items:
                return removed
            return {"all": [{"any": [{"tag": _literal_glob(v)} for v in items]}, removed]}
        return cond
    return {k: [_tag_leaves_as_globs(c) for c in v] if k in ("all", "any", "none") and isinstance(v, list)
            else v for k, v in cond.items()}


def _cycle_key(cfg: Config, cycle: str) -> tuple[str | int, ...]:
    """``rules.N`` of the rule a cycle message names first (rule_cycles starts it with that rule's name)."""
    for i, rule in enumerate(cfg.rules):
        # rule_cycles looks at enabled rules only; a disabled one of the same name is not the one cited
        if rule.enabled and cycle.startswith(f"{rule.name} -> "):
            return ("rules", i)
    return ("rules",)


def require_valid(loaded: LoadedConfig, host: PluginHost | None) -> None:
    """Raise ConfigError when the config has any error (used before running)."""
    report = check_config(loaded, host)
    if report.errors:
        raise ConfigError(report.errors)
