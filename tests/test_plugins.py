"""The plugin host: a fresh host per test, plugins registered directly as small classes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge import Change, Connector, Record
from bridge.connectors.files import FilesConnector
from bridge.errors import PluginLoadError
from bridge.hookspecs import ClassifierRegister, ConnectorRegister
from bridge.model import utcnow
from bridge.plugins import PluginHost, create_host, format_plugins, hookimpl

ROOT = Path(__file__).resolve().parent.parent
CLEAN: dict[str, str] = {}  # an environment without BRIDGE_* variables


def connector_class(name: str) -> type[Connector]:
    return type(f"{name.title()}Connector", (Connector,), {"name": name})


class Connects:
    """A plugin registering the given connector classes."""

    def __init__(self, *classes: Any) -> None:
        self.classes = classes

    @hookimpl
    def register_connectors(self, register: ConnectorRegister) -> None:
        for cls in self.classes:
            register(cls)


class Misspelt:
    @hookimpl
    def register_conectors(self, register: ConnectorRegister) -> None:
        raise AssertionError("never called")


def bare_host(**env: str) -> PluginHost:
    return PluginHost(environ=env)


def statuses(host: PluginHost) -> dict[str, str]:
    return {i["name"]: i["status"] for i in host.describe()}


# ------------------------------------------------------------------ built-ins and the JSON listing


def test_builtin_files_connector_is_listed() -> None:
    host = create_host(environ=CLEAN)
    [files] = [i for i in host.describe() if i["name"] == "files"]
    assert files == {
        "name": "files", "distribution": "bridge-sync", "version": files["version"],
        "module": "bridge.connectors.files", "origin": "builtin", "hooks": ["register_connectors"],
        "connectors": ["files"], "status": "ok", "error": None,
    }
    assert host.connectors()["files"] is FilesConnector
    assert host.connector_class("files") is FilesConnector


def test_each_host_is_its_own() -> None:
    one, two = create_host(environ=CLEAN), create_host(environ=CLEAN)
    one.register(Connects(connector_class("only_in_one")), "extra")
    assert "only_in_one" in one.connectors()
    assert "only_in_one" not in two.connectors()


def test_an_unknown_connector_names_what_is_installed() -> None:
    host = create_host(disabled=["files"], environ=CLEAN)
    with pytest.raises(PluginLoadError, match=r"no plugin registers connector 'nope' \(.*; blocked: files\)"):
        host.connector_class("nope")


# ------------------------------------------------------------------ entry points


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution ``bridge-tp`` on sys.path with three entry points: good, broken, and one to block."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "bridge_tp_good.py").write_text(
        "from bridge import Connector, hookimpl\n"
        "class TpConnector(Connector):\n    name = 'tpgood'\n"
        "@hookimpl\ndef register_connectors(register):\n    register(TpConnector)\n", encoding="utf-8")
    (folder / "bridge_tp_broken.py").write_text("raise ImportError('missing dependency: fancylib')\n")
    (folder / "bridge_tp_blocked.py").write_text("raise RuntimeError('a blocked plugin is never imported')\n")
    dist = folder / "bridge_tp-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bridge-tp\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(
        "[bridge.plugins]\ntpgood = bridge_tp_good\ntpbroken = bridge_tp_broken\n"
        "tpblocked = bridge_tp_blocked\n[other.group]\nignored = bridge_tp_blocked\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in ("bridge_tp_good", "bridge_tp_broken", "bridge_tp_blocked"):
        sys.modules.pop(name, None)


def test_a_broken_entry_point_is_failed_and_the_others_load(site: Path) -> None:
    host = create_host(disabled=["tpblocked"], environ=CLEAN)
    infos = {i["name"]: i for i in host.describe()}
    assert infos["tpgood"] | {"hooks": None} == {
        "name": "tpgood", "distribution": "bridge-tp", "version": "1.0", "module": "bridge_tp_good",
        "origin": "entry_point", "hooks": None, "connectors": ["tpgood"], "status": "ok", "error": None,
    }
    assert infos["tpbroken"]["status"] == "failed"
    assert infos["tpbroken"]["error"] == "ImportError: missing dependency: fancylib"
    assert infos["tpblocked"]["status"] == "blocked"
    assert "bridge_tp_blocked" not in sys.modules
    assert infos["files"]["status"] == "ok"
    assert "plugin tpbroken (entry_point): ImportError: missing dependency: fancylib" in host.errors
    assert {"tpgood", "files"} <= set(host.connectors())


def test_an_entry_point_cannot_take_a_builtin_plugin_name(site: Path) -> None:
    (site / "bridge_tp-1.0.dist-info" / "entry_points.txt").write_text(
        "[bridge.plugins]\nfiles = bridge_tp_good\n", encoding="utf-8")
    host = create_host(environ=CLEAN)
    failed = [i for i in host.infos if i.name == "files" and i.origin == "entry_point"]
    assert [i.error for i in failed] == [
        "plugin name 'files' is already taken by builtin plugin bridge.connectors.files"]
    assert host.connectors()["files"] is FilesConnector


# ------------------------------------------------------------------ the plugins folder


def test_plugins_dir_module_with_a_syntax_error_is_reported_by_name(tmp_path: Path) -> None:
    (tmp_path / "local.py").write_text(
        "from bridge import Connector, hookimpl\n"
        "class LocalConnector(Connector):\n    name = 'local'\n"
        "@hookimpl\ndef register_connectors(register):\n    register(LocalConnector)\n", encoding="utf-8")
    (tmp_path / "bad.py").write_text("def register_connectors(:\n    pass\n", encoding="utf-8")
    (tmp_path / "_helper.py").write_text("raise RuntimeError('helpers are not plugins')\n", encoding="utf-8")
    host = create_host(plugins_dir=tmp_path, environ=CLEAN)
    bad, local = host.info("bad"), host.info("local")
    assert bad is not None and local is not None
    assert (bad.status, bad.origin, bad.module) == ("failed", "plugins_dir", str(tmp_path / "bad.py"))
    assert bad.error is not None and bad.error.startswith("SyntaxError: ") and "bad.py, line 1" in bad.error
    assert (local.status, local.connectors) == ("ok", ["local"])
    assert host.info("_helper") is None
    assert "local" in host.connectors()


def test_a_missing_plugins_dir_is_a_problem(tmp_path: Path) -> None:
    host = create_host(plugins_dir=tmp_path / "absent", environ=CLEAN)
    assert f"plugins_dir {str(tmp_path / 'absent')!r} is not a directory" in host.errors


# ------------------------------------------------------------------ blocking


@pytest.mark.parametrize(
    ("env", "disabled"),
    [({"BRIDGE_DISABLED_PLUGINS": " files , other "}, []), ({}, ["files"]),
     ({"BRIDGE_DISABLED_PLUGINS": ""}, ["files"])],
    ids=["env", "config", "config-with-empty-env"],
)
def test_a_plugin_is_blocked_by_env_or_config(env: dict[str, str], disabled: list[str]) -> None:
    host = create_host(disabled=disabled, environ=env)
    assert statuses(host)["files"] == "blocked"
    assert "files" not in host.connectors()
    assert host.pm.get_plugin("files") is None
    assert not [e for e in host.errors if "files" in e]  # blocked is not failed


def test_a_blocked_directly_registered_plugin_is_listed_not_loaded() -> None:
    host = bare_host(BRIDGE_DISABLED_PLUGINS="mine")
    info = host.register(Connects(connector_class("mine")), "mine")
    host.check()
    assert info.status == "blocked" and host.connectors() == {}


# ------------------------------------------------------------------ validation


def test_two_plugins_registering_one_connector_name_is_an_error_naming_both() -> None:
    host = bare_host()
    first_cls, second_cls = connector_class("dup"), connector_class("dup")
    host.register(Connects(first_cls), "first")
    host.register(Connects(connector_class("other"), second_cls), "second")
    host.check()
    assert statuses(host) == {"first": "ok", "second": "failed"}
    assert host.errors == [
        "plugin second (builtin): connector 'dup' is registered by both builtin plugin first "
        "and builtin plugin second"]
    assert host.connectors() == {"dup": first_cls}  # the failed plugin's other connector is gone too
    assert host.pm.get_plugin("second") is None


def test_a_plugin_cannot_take_a_builtin_connector_name() -> None:
    host = create_host(environ=CLEAN)
    host.register(Connects(connector_class("files")), "impostor", "plugins_dir")
    host.check()
    info = host.info("impostor")
    assert info is not None and info.status == "failed"
    assert info.error == ("connector 'files' is registered by both builtin plugin files "
                          "and plugins_dir plugin impostor")
    assert host.connectors()["files"] is FilesConnector


def test_a_misspelt_hook_fails_its_plugin_by_name_and_the_others_stay() -> None:
    host = bare_host()
    good = connector_class("good")
    host.register(Connects(good), "good")
    host.register(Misspelt(), "typo")
    host.check()
    info = host.info("typo")
    assert info is not None and info.status == "failed"
    assert info.error == "unknown hook 'register_conectors' (did you mean 'register_connectors'?)"
    assert host.pm.get_plugin("typo") is None
    host.pm.check_pending()  # nothing pending any more
    assert host.connectors() == {"good": good}


class WrongArgument:
    @hookimpl
    def startup(self, application: object) -> None:
        raise AssertionError("never called")


class NotAConnector:
    @hookimpl
    def register_connectors(self, register: ConnectorRegister) -> None:
        register(dict)  # type: ignore[arg-type]


class Nameless:
    @hookimpl
    def register_connectors(self, register: ConnectorRegister) -> None:
        register(Connector)


class Raises:
    @hookimpl
    def register_connectors(self, register: ConnectorRegister) -> None:
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("plugin", "error"),
    [
        (WrongArgument(), "PluginValidationError: Plugin 'broken' for hook 'startup'"),
        (NotAConnector(), "<class 'dict'> is not a Connector subclass with a name"),
        (Nameless(), "<class 'bridge.connector.Connector'> is not a Connector subclass with a name"),
        (Raises(), "RuntimeError: boom"),
    ],
    ids=["bad-argument", "not-a-connector", "nameless", "raises"],
)
def test_a_bad_plugin_is_failed_and_the_others_load(plugin: object, error: str) -> None:
    host = bare_host()
    good = connector_class("good")
    host.register(Connects(good), "good")
    info = host.register(plugin, "broken")
    host.check()
    assert info.status == "failed"
    assert info.error is not None and info.error.startswith(error)
    assert host.connectors() == {"good": good}
    assert host.pm.get_plugin("broken") is None


def test_a_plugin_name_is_registered_once() -> None:
    host = bare_host()
    host.register(Connects(), "same")
    second = host.register(Connects(), "same", "plugins_dir")
    assert second.status == "failed"
    taken = f"plugin name 'same' is already taken by builtin plugin {Connects.__module__}.Connects"
    assert second.error == taken


def test_classifiers_are_collected_with_their_plugin() -> None:
    def refund(record: Record, change: Change) -> list[tuple[str, float]]:
        return [("billing/refund", 0.9)] if "refund" in change.text else []

    class Classifies:
        @hookimpl
        def register_classifiers(self, register: ClassifierRegister) -> None:
            register("refund", refund)

    host = bare_host()
    host.register(Classifies(), "classifies")
    host.check()
    assert host.classifiers() == {"refund": refund}
    assert host.info("classifies") is not None
    assert host.describe()[0]["hooks"] == ["register_classifiers"]


# ------------------------------------------------------------------ calling


def record_and_change() -> tuple[Record, Change]:
    change = Change("files", "ticket", "T-1", utcnow(), attrs={"subject": "refund please"})
    return Record("r1", "ticket"), change


class Proposes:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    @hookimpl
    def classify(self, record: Record, change: Change) -> list[tuple[str, float]]:
        return [(self.tag, 0.5)]


class RecordOnly:
    @hookimpl
    def classify(self, record: Record) -> list[tuple[str, float]]:
        return [(f"seen/{record.id}", 1.0)]


class Broken:
    @hookimpl
    def classify(self, record: Record, change: Change) -> list[tuple[str, float]]:
        raise ValueError("model file missing")


def test_call_each_attributes_a_failure_and_hides_no_other(caplog: pytest.LogCaptureFixture) -> None:
    host = bare_host()
    host.register(Proposes("a/first"), "a")
    host.register(Broken(), "b")
    host.register(RecordOnly(), "c")
    host.check()
    record, change = record_and_change()
    with pytest.raises(ValueError, match="model file missing"):
        host.hook.classify(record=record, change=change)  # plain pluggy: one exception stops the chain
    with caplog.at_level(logging.ERROR, logger="bridge.plugins"):
        outcomes = host.call_each("classify", record=record, change=change)
    assert [o.plugin for o in outcomes] == ["c", "b", "a"]  # pluggy's order: last registered first
    assert [o.value for o in outcomes if o.ok] == [[("seen/r1", 1.0)], [("a/first", 0.5)]]
    [failed] = [o for o in outcomes if not o.ok]
    assert failed.plugin == "b" and isinstance(failed.error, ValueError)
    assert "plugin b failed in classify: ValueError: model file missing" in caplog.text
    assert host.classify(record, change) == [("seen/r1", 1.0), ("a/first", 0.5)]
    assert statuses(host) == {"a": "ok", "b": "ok", "c": "ok"}  # a runtime failure does not unload a plugin


def test_call_each_of_an_unknown_hook_is_an_error() -> None:
    with pytest.raises(PluginLoadError, match="no hook named 'clasify'"):
        bare_host().call_each("clasify")


class Starts:
    @hookimpl
    def startup(self, app: object) -> None:
        pass


class App:
    def __repr__(self) -> str:
        return "App(token='s3cret')"


@pytest.mark.parametrize("trace", ["1", "0", ""])
def test_bridge_trace_plugins_logs_every_hook_call(trace: str, caplog: pytest.LogCaptureFixture) -> None:
    host = bare_host(BRIDGE_TRACE_PLUGINS=trace)
    host.register(Starts(), "starts")
    host.check()
    with caplog.at_level(logging.INFO, logger="bridge.plugins"):
        host.hook.startup(app=App())
        host.startup(App())
    messages = [r.getMessage() for r in caplog.records]
    if trace == "1":
        # through pluggy's hook and through call_each, each with the argument names
        assert messages.count("hook startup(app): calling starts") == 2
        assert "hook startup: done" in messages
    else:
        assert not [m for m in messages if m.startswith("hook ")]
    assert "s3cret" not in caplog.text


# ------------------------------------------------------------------ the human table


def test_format_plugins_shows_each_plugin_and_its_error() -> None:
    host = bare_host()
    host.register(Connects(connector_class("good")), "good")
    host.register(Misspelt(), "typo", "plugins_dir")
    host.check()
    lines = format_plugins(host.describe()).splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "ORIGIN", "STATUS", "CONNECTORS", "HOOKS"]
    assert lines[1].split() == ["good", "-", "builtin", "ok", "good", "register_connectors"]
    assert lines[2].split() == ["typo", "-", "plugins_dir", "failed", "-", "register_conectors"]
    assert lines[3] == "    error: unknown hook 'register_conectors' (did you mean 'register_connectors'?)"
    assert format_plugins(host.infos) == format_plugins(host.describe())
    assert format_plugins([]) == "no plugins"


# ------------------------------------------------------------------ the example plugin, installed for real


def test_installed_webform_plugin_is_listed_and_passes_its_own_tests(tmp_path: Path) -> None:
    source = tmp_path / "bridge-webform"
    shutil.copytree(ROOT / "plugins" / "bridge-webform", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        check=True, capture_output=True, cwd=tmp_path, timeout=300,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    listing = subprocess.run([sys.executable, "-m", "bridge.cli", "plugins", "--json"],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    [webform] = [p for p in json.loads(listing.stdout) if p["name"] == "webform"]
    assert webform == {
        "name": "webform", "distribution": "bridge-webform", "version": "0.1.0", "module": "bridge_webform",
        "origin": "entry_point", "hooks": ["register_connectors"], "connectors": ["webform"], "status": "ok",
        "error": None,
    }
    tests = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-v", "-p", "no:cacheprovider"],
                           capture_output=True, text=True, cwd=source, env=env, timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "TestWebformContract::test_pull_resumes_after_its_cursor PASSED" in tests.stdout
    assert "test_registers_its_connector_through_the_hook PASSED" in tests.stdout
