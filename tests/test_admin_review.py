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
from bridge.errors import StoreError
from test_check_review3 import run

run_check = run  # (the config as written, checked with its plugins)


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


# ---------------------------------------------------------------- 2, 3, 8 secrets

PASTED = "pat-na1-8f3e2b1c-SECRET-TOKEN-VALUE"


def test_a_token_pasted_into_token_env_is_an_error_that_does_not_repeat_it(tmp_path: Path) -> None:
    _loaded, report = run_check(tmp_path, f"""\
        [bridge]
        webhook_secret_env = "whsec-{PASTED}"

        [connectors.hubspot]
        plugin = "hubspot"
        token_env = "{PASTED}"
        kinds = ["account"]
        """)
    path = tmp_path / "bridge.toml"
    assert report.errors == [
        f"{path}:2: bridge.webhook_secret_env: not an environment variable name (the value is not shown: "
        "it may be the secret itself); write the NAME of the variable that holds the secret",
        f"{path}:6: connectors.hubspot.token_env: not an environment variable name (the value is not shown: "
        "it may be the secret itself); write the NAME of the variable that holds the token",
    ]
    assert not any("SECRET" in line for line in report.errors + report.warnings)


UNSET_TOKEN = """\
    [bridge]
    database = "sqlite:///bridge.db"
    serve = false

    [connectors.hubspot]
    plugin = "hubspot"
    token_env = "HUBSPOT_TOKEN_NOT_SET_HERE"
    base_url = "http://127.0.0.1:9"
    kinds = ["account"]
    """


def test_an_unset_token_variable_stops_the_run_naming_the_variable_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "bridge.toml").write_text(textwrap.dedent(UNSET_TOKEN))
    for command in (("run", "--once"), ("sync",)):
        res = bridge(*command, "--config", "bridge.toml", cwd=tmp_path)
        assert res.returncode == 1
        assert res.stderr.splitlines() == [
            "bridge.toml:7: connectors.hubspot.token_env: environment variable HUBSPOT_TOKEN_NOT_SET_HERE "
            "is not set"
        ]


def test_a_secret_written_in_the_file_is_a_warning_that_does_not_repeat_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = """\
        [bridge]
        webhook_secret = "whsec-IN-FILE"

        [connectors.hubspot]
        plugin = "hubspot"
        kinds = ["account"]
        client_id = "not a secret"
        token = "pat-na1-SECRET-IN-FILE"
        refresh_token = "SECRET-REFRESH"
        """
    _loaded, report = run_check(tmp_path, text)
    path = tmp_path / "bridge.toml"
    assert report.ok
    assert report.warnings == [
        f"{path}:2: bridge.webhook_secret: warning: a secret written in the file: use webhook_secret_env (an "
        "environment variable) or webhook_secret_file (a file) instead (the value is not shown)",
        f"{path}:8: connectors.hubspot.token: warning: a secret written in the file: use token_env (an "
        "environment variable) or token_file (a file) instead (the value is not shown)",
        f"{path}:9: connectors.hubspot.refresh_token: warning: a secret written in the file: use "
        "refresh_token_env (an environment variable) or refresh_token_file (a file) instead (the value is "
        "not shown)",
    ]
    # from the environment, a secret is where it belongs
    monkeypatch.setenv("BRIDGE_CONNECTORS__HUBSPOT__TOKEN", "pat-from-env")
    _loaded, report = run_check(tmp_path, text.replace('token = "pat-na1-SECRET-IN-FILE"\n', ""))
    assert [w for w in report.warnings if "token" in w] == [report.warnings[-1]]
    assert "refresh_token" in report.warnings[-1]


# ---------------------------------------------------------------- 4 a files path that does not exist

MISSING_PATH = """\
    [bridge]
    database = "sqlite:///bridge.db"
    serve = false

    [connectors.crm]
    plugin = "files"
    path = "config/demo/crm"
    kinds = ["account"]
    """


def test_check_warns_of_a_files_path_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _loaded, report = run_check(tmp_path, MISSING_PATH)
    assert report.ok
    assert report.warnings == [
        f"{tmp_path / 'bridge.toml'}:7: connectors.crm.path: warning: no such folder or file here: "
        f"config/demo/crm (relative to {tmp_path})"
    ]
    (tmp_path / "config" / "demo" / "crm").mkdir(parents=True)
    assert run_check(tmp_path, MISSING_PATH)[1].warnings == []


def test_a_run_with_a_files_path_that_does_not_exist_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bridge.toml").write_text(textwrap.dedent(MISSING_PATH))
    res = bridge("run", "--once", "--config", "bridge.toml", cwd=tmp_path)
    assert res.returncode == 1
    assert (
        f"problem: pull crm account: crm: path: no such folder or file here: config/demo/crm "
        f"(relative to {tmp_path})"
    ) in res.stdout.splitlines()
    assert "Traceback" not in res.stdout + res.stderr and "FileNotFoundError" not in res.stdout + res.stderr


# ---------------------------------------------------------------- 5 dead letters that do not exist


@pytest.fixture
def dead(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """A config with one system, ``crm``, and a store with a dead letter of it and one of ``gone``, a
    system no longer configured: their ids by system."""
    from datetime import UTC, datetime, timedelta

    from bridge.model import Write
    from bridge.store import Store

    (tmp_path / "bridge.toml").write_text(
        f'[bridge]\ndatabase = "sqlite:///{tmp_path}/bridge.db"\n\n'
        f'[connectors.crm]\nplugin = "files"\npath = "{tmp_path}"\n'
    )
    now = datetime(2026, 11, 2, tzinfo=UTC)
    with Store.open(f"sqlite:///{tmp_path}/bridge.db") as store:
        with store.session() as tx:
            for system in ("crm", "gone"):
                tx.enqueue(Write(system, "ticket", f"r-{system}", f"x-{system}", {"plan": "Pro"}), now)
        for system in ("crm", "gone"):
            for item in store.claim(system, None, 10, now, timedelta(minutes=5)):
                store.fail(item.id, "400 bad", now, None)
        ids = {i.system: i.id for i in store.dead_letters()}
    return tmp_path / "bridge.toml", ids


def deadletter(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from bridge.cli import main

    try:
        code = main(["deadletter", *args])
    except SystemExit as exc:  # argparse's bad usage
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_deadletter_refuses_unknown_systems_and_ids(
    dead: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, ids = dead
    c = ("--config", str(config))
    assert deadletter(capsys, "retry", "99999", *c) == (
        2, "", "no dead letter 99999 (`bridge deadletter list` shows them)\n"
    )
    unknown = "unknown system 'hubspt'; configured: crm\n"
    assert deadletter(capsys, "retry", "--system", "hubspt", *c) == (2, "", unknown)
    assert deadletter(capsys, "list", "--system", "hubspt", *c) == (2, "", unknown)
    assert deadletter(capsys, "retry", str(ids["crm"]), "--system", "gone", *c) == (
        2, "", f"no dead letter {ids['crm']} of gone (`bridge deadletter list` shows them)\n"
    )
    code, _out, err = deadletter(capsys, "list", "abc", *c)  # list takes no ids
    assert code == 2 and "unrecognized arguments: abc" in err
    # a system no longer configured is known while it has dead letters
    code, out, _err = deadletter(capsys, "list", "--system", "gone", *c)
    assert code == 0 and out.split("\t")[:2] == [str(ids["gone"]), "gone"]
    assert deadletter(capsys, "retry", str(ids["crm"]), *c) == (0, "1 write(s) back in the outbox\n", "")
    assert deadletter(capsys, "retry", str(ids["crm"]), *c)[0] == 2  # no longer dead


def test_run_and_deadletter_help_say_what_cli_md_says(capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.cli import main

    for args in (["run", "--help"], ["deadletter", "list", "--help"], ["deadletter", "retry", "--help"]):
        with pytest.raises(SystemExit):
            main(args)
    text = " ".join(capsys.readouterr().out.split())
    assert "--once run every job once, print the summary and exit" in text
    assert "usage: bridge deadletter list [-h] [--config CONFIG] [--json] [-v] [--system S] options" in text
    assert "usage: bridge deadletter retry [-h] [--config CONFIG] [--json] [-v] [--system S] [ID ...]" in text


# ---------------------------------------------------------------- 7 log_level

ROOT = Path(__file__).resolve().parents[1]


def test_log_level_is_honoured_and_v_still_wins(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(ROOT / "config", tmp_path / "config")
    cfg = tmp_path / "config" / "bridge.toml"
    cfg.write_text(cfg.read_text().replace("[bridge]\n", '[bridge]\nlog_level = "error"\n', 1))
    quiet = bridge("sync", "--dry-run", cwd=tmp_path)
    assert quiet.returncode == 1, quiet.stderr  # (the demo's Sev-9 problem)
    assert " INFO " not in quiet.stderr and " WARNING " not in quiet.stderr
    assert "problem: inbox ticket T-1007" in quiet.stderr
    loud = bridge("sync", "--dry-run", "-v", cwd=tmp_path)
    assert " INFO bridge.scheduler: rules: desk rebuilt" in loud.stderr  # -v: debug, whatever the file says


def test_a_log_level_outside_the_four_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _loaded, report = run_check(tmp_path, '[bridge]\nlog_level = "LOUD"\n')
    assert report.errors == [
        f"{tmp_path / 'bridge.toml'}:2: bridge.log_level: use DEBUG, INFO, WARNING or ERROR, got 'LOUD'"
    ]
    monkeypatch.setenv("BRIDGE_BRIDGE__LOG_LEVEL", "verbose")
    _loaded, report = run_check(tmp_path, "[bridge]\n")
    assert report.errors == [
        "$BRIDGE_BRIDGE__LOG_LEVEL: bridge.log_level: use DEBUG, INFO, WARNING or ERROR, got 'verbose'"
    ]
    monkeypatch.setenv("BRIDGE_BRIDGE__LOG_LEVEL", "warning")
    loaded, report = run_check(tmp_path, "[bridge]\n")
    assert report.ok and loaded is not None and loaded.config.bridge.log_level == "WARNING"


# ---------------------------------------------------------------- 9 an unset webhook secret


@pytest.mark.parametrize(("serve", "what"), [
    ("true", "the daemon (bridge run without --once) will not start; bridge run --once serves no webhooks "
             "and runs"),
    ("false", "unused while serve = false"),
])
def test_the_unset_webhook_secret_warning_says_what_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve: str, what: str
) -> None:
    monkeypatch.delenv("NO_SUCH_HOOK_SECRET", raising=False)
    text = f'[bridge]\nwebhook_secret_env = "NO_SUCH_HOOK_SECRET"\nserve = {serve}\n'
    _loaded, report = run_check(tmp_path, text)
    assert report.warnings == [
        f"{tmp_path / 'bridge.toml'}:2: bridge.webhook_secret_env: warning: $NO_SUCH_HOOK_SECRET is not set "
        f"here: {what}"
    ]


# ---------------------------------------------------------------- 10 X-Bridge-Signature, as sync.md shows it


def _signature_example() -> tuple[str, str, str]:
    """sync.md's shell example, the body it signs and the header it gives for the secret ``s3cret``."""
    import re

    text = (ROOT / "docs" / "sync.md").read_text()
    section = text.split("## Webhooks and their signature", 1)[1].split("\n## ", 1)[0]
    shell = section.split("```\n", 2)[1].split("```", 1)[0]
    body = re.search(r"printf '%s' '(.*)' > body.json", shell)
    header = re.search(r"the secret `s3cret`, that body's header is\s+`(sha256=[0-9a-f]{64})`", section)
    assert body and header, section
    return shell, body.group(1), header.group(1)


def test_the_documented_signature_is_the_servers(tmp_path: Path) -> None:
    import httpx

    from bridge.server import sign
    from test_server import make_server

    _shell, body, header = _signature_example()
    assert sign(b"s3cret", body.encode()) == header
    for _server, base in make_server(tmp_path, webhook_secret="s3cret"):
        answer = httpx.post(f"{base}/webhooks/desk", content=body.encode(),
                            headers={"X-Bridge-Signature": header}, timeout=10)
        assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "problems": []})
        answer = httpx.post(f"{base}/webhooks/desk", content=body.encode(), timeout=10)
        assert answer.status_code == 401


@pytest.mark.skipif(not all(map(__import__("shutil").which, ("openssl", "curl", "bash"))),
                    reason="needs openssl, curl and bash")
def test_the_documented_curl_and_openssl_lines_get_202(tmp_path: Path) -> None:
    from test_server import make_server

    shell, _body, _header = _signature_example()
    for _server, base in make_server(tmp_path, webhook_secret="s3cret"):
        script = shell.replace("http://127.0.0.1:8787/webhooks/inbox", f"{base}/webhooks/desk").rstrip()
        env = {**os.environ, "BRIDGE_WEBHOOK_SECRET": "s3cret"}
        res = subprocess.run(["bash", "-c", script + ' -s -w " %{http_code}"'], cwd=tmp_path, text=True,
                             capture_output=True, timeout=60, env=env)
        assert res.stdout == '{"accepted": 1, "problems": []} 202', res.stderr


# ---------------------------------------------------------------- 12 numbers written as text


def test_a_number_written_as_text_is_an_error_as_true_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = f"""\
        [bridge]
        http_port = "8080"
        outbox_max_attempts = 5.0

        [connectors.crm]
        plugin = "files"
        path = "{tmp_path}"
        page_size = "100"
        timeout = "30"

        [[agents]]
        email = "a@example.com"
        capacity = true

        [classify]
        min_confidence = "0.5"

        [[rules]]
        name = "r"
        priority = "10"
        then = [{{ add_tags = "x" }}]
        """
    _loaded, report = run_check(tmp_path, text)
    path = tmp_path / "bridge.toml"
    assert sorted(report.errors) == sorted([
        f"{path}:2: bridge.http_port: http_port takes a whole number, got '8080' (write 8080 without quotes)",
        f"{path}:3: bridge.outbox_max_attempts: outbox_max_attempts takes a whole number, got 5.0",
        f"{path}:8: connectors.crm.page_size: page_size takes a whole number, got '100' "
        "(write 100 without quotes)",
        f"{path}:9: connectors.crm.timeout: timeout takes a number, got '30' (write 30 without quotes)",
        f"{path}:13: agents.0.capacity: capacity takes a whole number, got true",
        f"{path}:16: classify.min_confidence: min_confidence takes a number, got '0.5' "
        "(write 0.5 without quotes)",
        f"{path}:20: rules.0.priority: priority takes a whole number, got '10' (write 10 without quotes)",
    ])
    # a variable's value is always text: it is read as the number it spells
    monkeypatch.setenv("BRIDGE_RULES__0__PRIORITY", "5")
    monkeypatch.setenv("BRIDGE_BRIDGE__HTTP_PORT", "8080")
    _loaded, report = run_check(tmp_path, text)
    assert not [e for e in report.errors if "priority" in e or "http_port" in e]
    assert len(report.errors) == 5


# ---------------------------------------------------------------- messages that said nothing of what to do


def test_an_unknown_key_suggests_the_known_one_of_its_table(tmp_path: Path) -> None:
    _loaded, report = run_check(tmp_path, f"""\
        [bridge]
        timzone = "UTC"

        [connectors.crm]
        plugin = "files"
        path = "{tmp_path}"
        sync_evry = "5m"

        [connectors.hub]
        plugin = "hubspot"
        tokn_env = "HUB_TOKEN"

        [fields.arr]
        type = "number"
        ownr = "crm"

        [[rules]]
        name = "r"
        priorty = 5
        then = [{{ add_tags = "x" }}]

        [folow_up]
        after = "1d"
        """)
    path = tmp_path / "bridge.toml"
    assert sorted(report.errors) == sorted([
        f"{path}:2: bridge.timzone: unknown key (did you mean 'timezone'?)",
        f"{path}:7: connectors.crm.sync_evry: unknown key (did you mean 'sync_every'?)",
        f"{path}:11: connectors.hub.tokn_env: unknown key (did you mean 'token_env'?)",
        f"{path}:15: fields.arr.ownr: unknown key (did you mean 'owner'?)",
        f"{path}:19: rules.0.priorty: unknown key (did you mean 'priority'?)",
        f"{path}:22: folow_up: unknown key (did you mean 'follow_up'?)",
    ])
    _loaded, report = run_check(tmp_path, '[bridge]\nnothing_like_it = 1\n')
    assert report.errors == [f"{path}:2: bridge.nothing_like_it: unknown key"]


def test_common_wrong_types_are_said_in_plain_words(tmp_path: Path) -> None:
    _loaded, report = run_check(tmp_path, f"""\
        [connectors.crm]
        plugin = "files"
        path = "{tmp_path}"
        kinds = "account"
        sync_every = 300

        [[agents]]
        email = "a@example.com"
        capacity = "eight"

        [[sla]]
        name = "s"
        first_response = true
        """)
    path = tmp_path / "bridge.toml"
    assert sorted(report.errors) == sorted([
        f'{path}:4: connectors.crm.kinds: kinds takes a list in brackets (write ["account"] for one), '
        "got a string",
        f'{path}:5: connectors.crm.sync_every: sync_every takes a duration in quotes: write "5m" for 300 '
        "seconds (units s, m, h, d)",
        f"{path}:9: agents.0.capacity: capacity takes a whole number, got 'eight'",
        f'{path}:13: sla.0.first_response: first_response takes a duration in quotes (e.g. "30s", "15m", '
        '"4h", "2d"), got a boolean',
    ])
    assert not any("Input should be" in e for e in report.errors)


@pytest.mark.parametrize(("var", "value", "key"), [
    ("BRIDGE_RULES__0__THEN", '[{"add_tags": "x"', "rules.0.then"),  # an entry's list: read by bridge
    ("BRIDGE_RULES", '[{"name": "x"', "rules"),  # a whole list: read by pydantic-settings
])
def test_malformed_json_in_a_variable_is_named_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str, key: str
) -> None:
    monkeypatch.setenv(var, value)
    _loaded, report = run_check(tmp_path, '[[rules]]\nname = "r"\nthen = [{ add_tags = "x" }]\n')
    assert len(report.errors) == 1
    assert report.errors[0].startswith(f"${var}: {key}: the variable's value is not valid JSON: Expecting")


def test_a_missing_config_file_says_how_to_name_one(tmp_path: Path) -> None:
    res = bridge("check", cwd=tmp_path)
    assert res.returncode == 1
    assert res.stdout.splitlines() == [
        f"config/bridge.toml:0: (file): cannot read config: no such file here (relative to {tmp_path}); "
        "name the config file with --config PATH or $BRIDGE_CONFIG (without either, bridge reads "
        "config/bridge.toml)"
    ]


def test_main_called_in_process_leaves_the_log_level_as_it_found_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from bridge.cli import main

    (tmp_path / "bridge.toml").write_text(f'[bridge]\nlog_level = "DEBUG"\ndatabase = "sqlite:///{tmp_path}/b.db"\n')
    root = logging.getLogger()
    before = root.level
    assert main(["report", "--config", str(tmp_path / "bridge.toml")]) == 0
    assert root.level == before


def test_a_list_item_of_the_wrong_type_is_named_as_an_item(tmp_path: Path) -> None:
    _loaded, report = run_check(tmp_path, '[fields.x]\ntype = "select"\noptions = [1, "b"]\n')
    assert report.errors == [
        f"{tmp_path / 'bridge.toml'}:3: fields.x.options.0: an item of options takes text in quotes, "
        "got a number"
    ]


BOOM_PLUGIN = '''\
from bridge import Connector, hookimpl


class BoomConnector(Connector):
    """A third-party connector whose start fails (a licence server down)."""

    name = "boom"

    def __init__(self, ctx):
        super().__init__(ctx)
        raise RuntimeError("licence server unreachable")


@hookimpl
def register_connectors(register):
    register(BoomConnector)
'''


def test_a_connector_that_fails_to_start_stops_its_own_system_only(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "boom.py").write_text(BOOM_PLUGIN)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "t.jsonl").write_text('{"id": "T-1", "subject": "s", "status": "open"}\n')
    (tmp_path / "bridge.toml").write_text(textwrap.dedent("""\
        [bridge]
        database = "sqlite:///bridge.db"
        serve = false
        plugins_dir = "plugins"

        [connectors.inbox]
        plugin = "files"
        path = "in"

        [connectors.b]
        plugin = "boom"
        """))
    for command in (("run", "--once"), ("sync",), ("sync", "inbox")):
        for old in tmp_path.glob("bridge.db*"):
            old.unlink()  # (each command pulls the inbox afresh)
        res = bridge(*command, "--config", "bridge.toml", cwd=tmp_path)
        assert res.returncode == 1, res.stderr
        assert "Traceback" not in res.stderr, command
        assert "pulled 1" in res.stdout or "records: 1 in store" in res.stdout, (command, res.stdout)
        said = res.stdout + res.stderr
        assert "the connector did not start: RuntimeError: licence server unreachable" in said


def test_a_dry_run_of_one_system_needs_no_other_systems_secret(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "t.jsonl").write_text('{"id": "T-1", "subject": "s", "status": "open"}\n')
    (tmp_path / "bridge.toml").write_text(textwrap.dedent(UNSET_TOKEN) + textwrap.dedent("""\
        [connectors.inbox]
        plugin = "files"
        path = "in"
        """))
    res = bridge("sync", "--dry-run", "inbox", "--config", "bridge.toml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "pulled 1" in res.stdout
    # the whole pass still needs it: hubspot is pulled too
    assert bridge("sync", "--dry-run", "--config", "bridge.toml", cwd=tmp_path).returncode == 1


def test_a_database_that_opens_but_cannot_be_set_up_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (a PostgreSQL login that may not create the tables: permission denied for schema public)
    import sqlalchemy as sa

    from bridge.store.store import Store

    def denied(self: Store) -> None:
        cause = Exception("permission denied for schema public\nLINE 1: CREATE TABLE alembic_version")
        raise sa.exc.ProgrammingError("CREATE TABLE alembic_version (...)", {}, cause)

    monkeypatch.setattr(Store, "migrate", denied)
    with pytest.raises(StoreError) as caught:
        Store.open(f"sqlite:///{tmp_path / 'b.db'}")
    assert str(caught.value).endswith(
        f"cannot set up the database (the SQLite file {tmp_path / 'b.db'}): "
        "permission denied for schema public")


HEX = "f3a9c0d1e2b4c5a6f7e8d9c0b1a2f3e4d5c6b7a8"  # a Pipedrive API token: a valid variable name


def test_a_hex_token_in_an_env_key_or_a_token_in_a_file_key_is_never_repeated(tmp_path: Path) -> None:
    _loaded, report = run_check(tmp_path, f"""\
        [connectors.pd]
        plugin = "pipedrive"
        api_token_env = "{HEX}"
        kinds = ["account"]

        [connectors.hubspot]
        plugin = "hubspot"
        token_file = "pat-na1-0b7c2d1e-9f3a-TOPSECRET"
        kinds = ["account"]
        """)
    path = tmp_path / "bridge.toml"
    assert report.errors == [
        f"{path}:3: connectors.pd.api_token_env: not an environment variable name (the value is not shown: "
        "it may be the secret itself); write the NAME of the variable that holds the api_token"]
    assert report.warnings == [
        f"{path}:8: connectors.hubspot.token_file: warning: cannot read the secret file this key names (the "
        "name is not shown: it may be the secret itself): No such file or directory"]
    # a path is a path: said as written
    _loaded, report = run_check(tmp_path, """\
        [connectors.hubspot]
        plugin = "hubspot"
        token_file = "secrets/hubspot.token"
        kinds = ["account"]
        """)
    assert "cannot read secret file secrets/hubspot.token: No such file or directory" in report.warnings[0]


@pytest.mark.parametrize("value", ["12345", "true"])
def test_an_env_key_that_is_not_text_is_an_error(tmp_path: Path, value: str) -> None:
    _loaded, report = run_check(tmp_path, f"""\
        [connectors.hubspot]
        plugin = "hubspot"
        token_env = {value}
        kinds = ["account"]
        """)
    assert report.errors == [
        f"{tmp_path / 'bridge.toml'}:3: connectors.hubspot.token_env: takes the name of an environment "
        'variable, in quotes ("HUBSPOT_TOKEN")']


def test_a_boolean_written_as_text_or_a_number_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # enabled = "off" quietly switched the system off
    text = f"""\
        [bridge]
        serve = "no"
        summary = 0

        [connectors.inbox]
        plugin = "files"
        path = "{tmp_path}"
        enabled = "off"
        """
    _loaded, report = run_check(tmp_path, text)
    path = tmp_path / "bridge.toml"
    assert sorted(report.errors) == sorted([
        f"{path}:2: bridge.serve: serve takes true or false, got 'no'",
        f"{path}:3: bridge.summary: summary takes true or false, got 0",
        f"{path}:8: connectors.inbox.enabled: enabled takes true or false, got 'off'",
    ])
    # a variable's value is text: BRIDGE_BRIDGE__SERVE=false is read as false
    monkeypatch.setenv("BRIDGE_BRIDGE__SERVE", "false")
    _loaded, report = run_check(tmp_path, text)
    assert not [e for e in report.errors if "serve" in e]


def test_a_connectors_text_key_set_by_a_variable_as_digits_is_that_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "2024").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRIDGE_CONNECTORS__INBOX__PATH", "2024")
    monkeypatch.setenv("BRIDGE_CONNECTORS__HUBSPOT__TOKEN", "0020240611")  # (read as JSON: 20240611)
    loaded, report = run_check(tmp_path, """\
        [connectors.inbox]
        plugin = "files"
        path = "elsewhere"

        [connectors.hubspot]
        plugin = "hubspot"
        kinds = ["account"]
        """)
    assert report.errors == []
    assert loaded is not None
    app = App(loaded, database=f"sqlite:///{tmp_path / 'b.db'}")
    try:
        assert app.connector("inbox").settings.path == "2024"  # type: ignore[attr-defined]
        token = app.connector("hubspot").settings.token  # type: ignore[attr-defined]
        assert token.get_secret_value() == "0020240611"
    finally:
        app.close()


@pytest.mark.parametrize("var, key", [
    ("BRIDGE_PLUGINS__DISABLED", "plugins.disabled"),
    ("BRIDGE_CONNECTORS__INBOX__KINDS", "connectors.inbox.kinds"),
])
def test_a_list_variable_that_is_not_json_is_named_with_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str, key: str
) -> None:
    monkeypatch.setenv(var, "webform")
    _loaded, report = run_check(tmp_path, f"""\
        [connectors.inbox]
        plugin = "files"
        path = "{tmp_path}"
        """)
    assert report.errors == [
        f'${var}: {key}: takes a list written as JSON (["a", "b"]); the variable' "'s value is not JSON"]


def test_a_misspelt_env_key_is_one_unknown_key_whether_its_variable_is_set_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = """\
        [connectors.hubspot]
        plugin = "hubspot"
        tokn_env = "HUBSPOT_TOKEN_OF_THIS_TEST"
        kinds = ["account"]
        """
    monkeypatch.setenv("HUBSPOT_TOKEN_OF_THIS_TEST", "secret-value")
    _loaded, report = run_check(tmp_path, text)
    assert report.errors == [
        f"{tmp_path / 'bridge.toml'}:3: connectors.hubspot.tokn_env: unknown key (did you mean 'token_env'?)"]


# ---------------------------------------------------------------- a third review of these fixes

REQUIRED_TOKEN_PLUGIN = '''\
from pydantic import SecretStr

from bridge import Connector, hookimpl
from bridge.settings import ConnectorSettings


class ReqSettings(ConnectorSettings):
    token: SecretStr


class ReqConnector(Connector):
    """A connector that cannot start without its token."""

    name = "req"
    kinds = ("account",)
    settings_model = ReqSettings


@hookimpl
def register_connectors(register):
    register(ReqConnector)
'''


def test_a_token_a_variable_sets_stands_beside_a_token_env_unset_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "req.py").write_text(REQUIRED_TOKEN_PLUGIN)
    monkeypatch.setenv("BRIDGE_CONNECTORS__CRM__TOKEN", "s3cr3t-value")
    _loaded, report = run_check(tmp_path, f"""\
        [bridge]
        plugins_dir = "{tmp_path / 'plugins'}"

        [connectors.crm]
        plugin = "req"
        token_env = "CRM_TOKEN_NOT_SET_IN_THIS_TEST"
        kinds = ["account"]
        """)
    assert report.errors == []


def test_a_whole_connector_table_from_one_variable_is_json_read_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # its numbers are numbers: a text key given one is an error, never the variable's whole document
    monkeypatch.setenv("BRIDGE_CONNECTORS__INBOX", '{"plugin": "files", "path": 2024}')
    _loaded, report = run_check(tmp_path, """\
        [connectors.inbox]
        plugin = "files"
        path = "in"
        """)
    assert report.errors == [
        "$BRIDGE_CONNECTORS__INBOX: connectors.inbox.path: path takes text in quotes, got a number"]


def test_a_pass_of_one_system_stops_before_any_pull_on_another_systems_unset_secret(tmp_path: Path) -> None:
    # (the pass pushes every system's outbox: it needs them all)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "t.jsonl").write_text('{"id": "T-1", "subject": "s", "status": "open"}\n')
    (tmp_path / "bridge.toml").write_text(textwrap.dedent(UNSET_TOKEN) + textwrap.dedent("""\
        [connectors.inbox]
        plugin = "files"
        path = "in"
        """))
    res = bridge("sync", "inbox", "--config", "bridge.toml", cwd=tmp_path)
    assert res.returncode == 1
    assert "HUBSPOT_TOKEN_NOT_SET_HERE is not set" in res.stderr
    assert "pulled" not in res.stdout and not (tmp_path / "bridge.db").exists()


def test_a_long_variable_name_without_underscores_that_is_set_is_a_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PylonApiToken2026Production", "s3cr3t")
    _loaded, report = run_check(tmp_path, """\
        [connectors.hubspot]
        plugin = "hubspot"
        token_env = "PylonApiToken2026Production"
        kinds = ["account"]
        """)
    assert report.errors == [] and report.warnings == []


@pytest.mark.parametrize("pasted", [
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3Rfc3luYyJ9.Xk_9dQw3LmVt5sRr1pZ8yA",  # a JWT
    "q8Zr3nW0yXhT5bLm2kVd/9sPfA7cJ1eGuR4oN6iHtY=",  # base64
])
def test_a_token_with_dots_or_slashes_pasted_into_a_file_key_is_not_repeated(
    tmp_path: Path, pasted: str
) -> None:
    _loaded, report = run_check(tmp_path, f"""\
        [connectors.hubspot]
        plugin = "hubspot"
        token_file = "{pasted}"
        kinds = ["account"]
        """)
    assert not any(pasted in line for line in report.errors + report.warnings)
    assert any("the name is not shown" in line for line in report.warnings)


def test_a_hex_token_pasted_into_webhook_secret_env_is_not_repeated(tmp_path: Path) -> None:
    _loaded, report = run_check(tmp_path, f"""\
        [bridge]
        webhook_secret_env = "{HEX}"
        """)
    assert report.errors == [
        f"{tmp_path / 'bridge.toml'}:2: bridge.webhook_secret_env: not an environment variable name (the "
        "value is not shown: it may be the secret itself); write the NAME of the variable that holds the "
        "secret"]
    assert not any(HEX in line for line in report.warnings)


def test_a_connector_that_fails_to_start_is_one_line_in_discover_and_503_to_its_webhooks(
    tmp_path: Path,
) -> None:
    from bridge.server import Server

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "boom.py").write_text(BOOM_PLUGIN)
    (tmp_path / "bridge.toml").write_text(textwrap.dedent(f"""\
        [bridge]
        database = "sqlite:///bridge.db"
        plugins_dir = "{tmp_path / 'plugins'}"

        [connectors.b]
        plugin = "boom"
        """))
    res = bridge("discover", "b", "--config", "bridge.toml", cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr == "error: b: the connector did not start: RuntimeError: licence server unreachable\n"
    loaded, _report = run_check(tmp_path, (tmp_path / "bridge.toml").read_text())
    assert loaded is not None
    app = App(loaded, database=f"sqlite:///{tmp_path / 'b.db'}")
    server = Server(app, "127.0.0.1", 0)
    server.start()
    try:
        status, answer = server.handle_webhook("b", {}, b"{}")
    finally:
        server.stop()
        app.close()
    assert (status, answer) == (503, {"error": "b: the connector did not start; see the bridge log"})
