"""What an admin following the docs ran into (review "docs"): a database that cannot be opened, secrets in
the wrong place, a missing `files` path, dead letters that do not exist, `log_level`, help and messages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.app import App
from bridge.check import Report, check_file
from bridge.errors import StoreError
from bridge.plugins import create_host
from bridge.settings import Config, LoadedConfig


def host_factory(cfg: Config):  # type: ignore[no-untyped-def]
    return create_host(cfg.plugins.disabled, cfg.bridge.plugins_dir)


def run_check(tmp_path: Path, text: str) -> tuple[LoadedConfig | None, Report]:
    path = tmp_path / "bridge.toml"
    path.write_text(textwrap.dedent(text))
    return check_file(path, host_factory)


def bridge(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("BRIDGE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120, check=False,
    )


# ---------------------------------------------------------------- 1 a database that cannot be opened


def test_check_rejects_a_database_url_that_does_not_parse(tmp_path: Path) -> None:
    _loaded, report = run_check(tmp_path, '[bridge]\ndatabase = "sqlite:/x.db"\n')
    assert report.errors == [
        f"{tmp_path / 'bridge.toml'}:2: bridge.database: cannot parse the URL "
        "(write e.g. sqlite:///bridge.db, or postgresql+psycopg://user@host/db)"
    ]


def test_check_rejects_a_database_bridge_does_not_speak(tmp_path: Path) -> None:
    _loaded, report = run_check(tmp_path, '[bridge]\ndatabase = "mysql://u:pw@h/db"\n')
    assert len(report.errors) == 1 and "bridge.database: unsupported database" in report.errors[0]
    assert "pw" not in report.errors[0]


def test_check_warns_of_a_sqlite_file_in_a_folder_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _loaded, report = run_check(tmp_path, '[bridge]\ndatabase = "sqlite:///nodir/bridge.db"\n')
    assert report.ok
    assert report.warnings == [
        f"{tmp_path / 'bridge.toml'}:2: bridge.database: warning: no such folder here: nodir "
        f"(relative to {tmp_path})"
    ]
    _loaded, report = run_check(tmp_path, '[bridge]\ndatabase = "sqlite:///bridge.db"\n')
    assert report.warnings == []


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("postgresql+psycopg://u:hunter2SECRET@127.0.0.1:9/db",
         "cannot open the database (postgresql at 127.0.0.1:9): connection failed"),
        ("sqlite:////nonexistent/dir/x.db",
         "cannot open the database (the SQLite file /nonexistent/dir/x.db): unable to open database file"),
    ],
)
def test_a_database_that_cannot_be_opened_is_one_line_naming_it(tmp_path: Path, url: str, where: str) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(f'[bridge]\ndatabase = "{url}"\n')
    app = App.from_path(path)
    with pytest.raises(StoreError) as caught:
        app.store  # noqa: B018
    assert str(caught.value).startswith(f"{path}:2: bridge.database: {where}")
    assert "hunter2SECRET" not in str(caught.value)


@pytest.mark.parametrize("command", [("run", "--once"), ("sync",), ("report",), ("explain", "x"),
                                     ("deadletter", "list")])
def test_commands_on_an_unreachable_database_exit_1_without_a_traceback(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    (tmp_path / "bridge.toml").write_text(
        '[bridge]\ndatabase = "postgresql+psycopg://u:hunter2SECRET@127.0.0.1:9/db"\n'
    )
    res = bridge(*command, "--config", "bridge.toml", cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        'bridge.toml:2: bridge.database: cannot open the database (postgresql at 127.0.0.1:9): connection '
        'failed: connection to server at "127.0.0.1", port 9 failed: Connection refused'
    ]
    assert "hunter2SECRET" not in res.stdout + res.stderr
