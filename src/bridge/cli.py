"""The ``bridge`` command. Exit codes: 0 success, 1 ran and found problems, 2 bad usage."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import sqlalchemy.exc

from bridge.errors import BridgeError, ConfigError, StoreError
from bridge.model import AGENT_STATUSES, parse_time

Handler = Callable[[argparse.Namespace], int]


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _app(args: argparse.Namespace) -> Any:
    """The App of ``--config``; its ``[bridge] log_level`` is the log level from now on, unless ``-v`` asked
    for debug."""
    from bridge.app import App

    app = App.from_path(args.config)
    if not args.verbose:
        logging.getLogger().setLevel(app.config.bridge.log_level)
    return app


# ---------------------------------------------------------------------------- commands


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config and the plugins it names."""
    from bridge.check import check_file
    from bridge.plugins import create_host

    loaded, report = check_file(
        args.config, lambda cfg: create_host(cfg.plugins.disabled, cfg.bridge.plugins_dir)
    )
    if args.json:
        _print_json({"ok": report.ok, "errors": report.errors, "warnings": report.warnings})
    else:
        for line in report.errors + report.warnings:
            print(line)
        if report.ok and loaded is not None:
            print(
                f"{loaded.path}: ok ({len(loaded.config.connectors)} connectors, "
                f"{len(loaded.config.fields)} fields, {len(loaded.config.rules)} rules)"
            )
    return 0 if report.ok else 1


def cmd_config_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of the config file."""
    from bridge.settings import Config

    _print_json(Config.model_json_schema())
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """List installed plugins."""
    from bridge.plugins import create_host, format_plugins
    from bridge.settings import load_config

    disabled: list[str] = []
    plugins_dir = None
    try:
        loaded = load_config(args.config)
        disabled, plugins_dir = loaded.config.plugins.disabled, loaded.config.bridge.plugins_dir
    except ConfigError:
        pass  # listing plugins must work without a valid config
    host = create_host(disabled, plugins_dir)
    infos = host.describe()
    if args.json:
        _print_json(infos)
    else:
        print(format_plugins(infos))
        for err in host.errors:
            print(f"error: {err}", file=sys.stderr)
    return 1 if any(i["status"] == "failed" for i in infos) or host.errors else 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay recorded events through the config on a virtual clock."""
    from bridge.app import App
    from bridge.replay import Replay, config_changes, diff, explain_diff, read_events, replay_file
    from bridge.rules.explain import format_explain_diff, format_routing

    loaded = _app(args).loaded  # an invalid config is refused, as by bridge run
    until, bad = _time_arg("--until", args.until)
    path = _events_file(args.file) if not bad else None
    if path is None:
        return 2
    if args.against:
        old_cfg = App.from_path(args.against).config
        old, _old_problems = replay_file(old_cfg, path, until=until)
        new, problems = replay_file(loaded.config, path, until=until)
        rows = diff(old, new)
        for row in rows:
            print(json.dumps(row, default=str, ensure_ascii=False) if args.json else _decision_line(row))
        changes = config_changes(old_cfg, loaded.config) if rows else []
        if changes and args.json:
            print(json.dumps({"config_changes": changes}, default=str, ensure_ascii=False))
        elif changes:  # (what rules and SLA policies do not explain: routing, follow-ups, tag mappings ...)
            print(f"\nthe config besides its rules and SLA policies (but the rules switched on or off), "
                  f"under {args.against} (-) and {args.config or 'the config'} (+):")
            for c in changes:
                print(f"  {c['key']}: {c['old']!r} -> {c['new']!r}")
        # then why: every rule of each config against each ticket that differs, as it stood at each moment
        # the runs decided otherwise (else at its final state), with what fired when
        differing: dict[str, list[str]] = {}
        for r in rows:
            if r.get("ticket_id") is not None:
                moments = differing.setdefault(str(r["ticket_id"]), [])
                if not r.get("final") and r.get("at"):
                    moments.append(str(r["at"]))
        sides = (f"under {args.against} (-) and {args.config or 'the config'} (+); a rule alike under both "
                 "is shown once")
        for why in explain_diff(old_cfg, loaded.config, path, differing, until=until) if differing else []:
            if args.json:
                print(json.dumps(why, default=str, ensure_ascii=False))
                continue
            for m in why["moments"]:
                event = f"its {m['event']} of {m['event_at']}" if m["event_at"] in m["times"] else (
                    f"timers; the rules as its {m['event']} of {m['event_at']} left them")
                print(f"\n{why['ticket_id']} at {', '.join(m['times'])} ({event}): the rules then, {sides}")
                print(format_explain_diff(m["old"], m["new"]))
                for mark, side in (("-", "old_routing"), ("+", "new_routing")):
                    for routing in m.get(side, ()):
                        lines = format_routing(routing, label="routing: ")
                        print("\n".join(f"{mark} {line}" for line in lines))
            if not why["moments"]:
                print(f"\n{why['ticket_id']}: the rules at its final state, {sides}")
                print(format_explain_diff(why["explain"]["old"], why["explain"]["new"]))
        for p in problems:
            print(f"{path}:{p.removeprefix('line ')}", file=sys.stderr)
        return 1 if problems else 0
    rp = Replay(loaded.config, until=until)
    for row in rp.run(read_events(path)):
        print(json.dumps(row, default=str, ensure_ascii=False) if args.json else _decision_line(row))
    for p in rp.problems:
        print(f"{path}:{p.removeprefix('line ')}", file=sys.stderr)
    return 1 if rp.problems else 0


def _decision_line(row: dict[str, Any]) -> str:
    prefix = f"{row['diff']} " if "diff" in row else ""
    if row.get("final"):
        fields = ", ".join(f"{k}={v}" for k, v in row.get("fields", {}).items())
        sla = ", ".join(f"{k}={v}" for k, v in (row.get("sla") or {}).items() if v is not None)
        return (
            f"{prefix}{row['ticket_id']}: final status={row.get('status')} priority={row.get('priority')} "
            f"assignee={row.get('assignee')} tags={','.join(row.get('tags', []))} fields[{fields}] "
            f"sentiment={row.get('sentiment')} escalations={','.join(row.get('escalations') or [])}"
            + (f" sla[{sla}]" if sla else "")
        )
    rest = {k: v for k, v in row.items() if k not in ("at", "ticket_id", "decision", "rule", "diff", "key")}
    extra = " ".join(f"{k}={v}" for k, v in rest.items())
    return f"{prefix}{row.get('at')} {row['ticket_id']} {row['decision']} [{row['rule']}] {extra}".rstrip()


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon (scheduler, webhook server, outbox pusher)."""
    from bridge.scheduler import run_daemon

    app = _app(args)
    try:
        return run_daemon(app, once=args.once, as_json=args.json)
    finally:
        app.close()


def cmd_sync(args: argparse.Namespace) -> int:
    """One sync pass now (``--dry-run`` prints the plan and writes nothing)."""
    from bridge.app import App
    from bridge.scheduler import sync_once

    app = _app(args)
    if args.dry_run and not app.has_store:
        # the plan of a fresh config is the plan against an empty store: one in memory, no file left behind
        app = App(app.loaded, app.host, database="sqlite:///:memory:")
    try:
        unknown = [s for s in args.systems if s not in app.config.connectors]
        if unknown:
            print(
                f"unknown system(s): {', '.join(unknown)}; configured: {', '.join(app.config.connectors)}",
                file=sys.stderr,
            )
            return 2
        report = sync_once(app, args.systems or None, dry_run=args.dry_run)
    finally:
        app.close()
    if args.json:
        _print_json(asdict(report))
    else:
        if args.dry_run:
            print("plan (nothing was written):" if report.plan else "plan: nothing to write")
            for p in report.plan:
                print(f"  {p.ref or p.record_id} {p.field} -> {p.system}: {p.old!r} -> {p.new!r} ({p.rule})")
        for c in report.conflicts:
            print(
                f"  conflict {c.record_id} {c.field}: {c.system} says {c.value!r}, owner has "
                f"{c.owner_value!r} ({c.rule}; {'reverted' if c.reverted else 'left'})"
            )
        for a in report.ambiguous:
            print(f"  ambiguous {a.system} {a.kind} {a.external_id}: candidates {', '.join(a.candidates)}")
        print(
            f"pulled {report.pulled} (echoes {report.echoes}), created {report.records_created}, "
            f"fields set {report.fields_set}, writes queued {report.writes_queued}, pushed {report.pushed} "
            f"in {report.push_calls} calls, skipped {report.skipped}, deferred {report.deferred}, "
            f"conflicts {len(report.conflicts)}, dead {report.dead}"
        )
        for problem in report.problems:
            print(f"problem: {problem}", file=sys.stderr)
    return 1 if report.problems or report.dead else 0


def cmd_deadletter(args: argparse.Namespace) -> int:
    """List or retry writes that failed for good."""
    from bridge.model import utcnow

    app = _app(args)
    try:
        dead = app.store.dead_letters() if app.has_store else []
        systems = sorted(set(app.config.connectors) | {i.system for i in dead})
        if args.system is not None and args.system not in systems:
            # (a system no longer configured is known while it has dead letters)
            print(f"unknown system {args.system!r}; configured: {', '.join(app.config.connectors)}",
                  file=sys.stderr)
            return 2
        if args.action == "list":
            items = [i for i in dead if args.system is None or i.system == args.system]
            if args.json:
                _print_json([asdict(i) for i in items])
            else:
                for i in items:
                    print(
                        f"{i.id}\t{i.system}\t{i.kind}\t{i.record_id}\tattempts={i.attempts}\t{i.last_error}"
                    )
                if not items:
                    print("no dead letters")
            return 0
        if not all(x.isdigit() for x in args.ids):
            print(f"deadletter retry takes outbox ids (numbers), got {' '.join(args.ids)}", file=sys.stderr)
            return 2
        ids = [int(x) for x in args.ids] or None
        known = {i.id for i in dead if args.system is None or i.system == args.system}
        unknown = [str(i) for i in ids or () if i not in known]
        if unknown:
            of = f" of {args.system}" if args.system is not None else ""
            print(f"no dead letter {', '.join(unknown)}{of} (`bridge deadletter list` shows them)",
                  file=sys.stderr)
            return 2
        count = app.store.retry_dead(ids, utcnow(), args.system) if dead else 0
        if args.json:
            _print_json({"retried": count})
        else:
            print(f"{count} write(s) back in the outbox")
        return 0
    finally:
        app.close()


def cmd_agent_status(args: argparse.Namespace) -> int:
    """Record an agent's status change in the store, for the rules of the running daemon."""
    from bridge.model import format_time, utcnow
    from bridge.scheduler import agent_status_request, record_agent_status

    app = _app(args)
    try:
        payload = {"agent": args.agent, "status": args.status}
        if args.at is not None:
            payload["at"] = args.at
        try:
            agent, status, at = agent_status_request(app.config, payload, utcnow())
        except ValueError as exc:
            print(f"agent-status: {exc}", file=sys.stderr)
            return 2
        done = record_agent_status(app, agent, status, at)
    finally:
        app.close()
    if args.json:
        _print_json({"agent": agent, "status": status, "at": format_time(at), "change_id": done.change_id})
    else:
        print(f"{agent} is {status} from {format_time(at)} (change {done.change_id}); the rules leader of "
              "`bridge run` takes it on its next rules job")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Why a record has its fields: owner, provenance and history."""
    from bridge.explain import explain_record, format_explain

    app = _app(args)
    try:
        data = explain_record(app, args.record_id) if app.has_store else None
    finally:
        app.close()
    if data is None:
        hint = "give a bridge record id or SYSTEM:EXTERNAL_ID" if app.has_store else (
            f"the store {app.config.bridge.database} holds nothing yet: `bridge run` or `bridge sync` "
            "fills it")
        print(f"no record {args.record_id!r} ({hint})", file=sys.stderr)
        return 1
    if args.json:
        _print_json(data)
    else:
        print(format_explain(data))
    return 0


def _time_arg(name: str, value: str | None) -> tuple[Any, int]:
    """``value`` (ISO 8601) as a time, or (None, 2) after saying why it is bad usage."""
    from bridge.replay import YEARS

    if value is None:
        return None, 0
    try:
        at = parse_time(value)
    except ValueError:
        print(f"{name}: {value!r} is not an ISO 8601 time (e.g. 2026-11-06T00:00:00Z)", file=sys.stderr)
        return None, 2
    if not YEARS[0] <= at.year <= YEARS[1]:
        print(f"{name}: {value!r} is out of range (years {YEARS[0]} to {YEARS[1]})", file=sys.stderr)
        return None, 2
    return at, 0


def _events_file(name: str) -> Path | None:
    """A file of recorded events to read, or None after saying why it is bad usage (missing, a folder)."""
    path = Path(name)
    if path.exists() and not path.is_dir():  # (a pipe such as /dev/stdin is read too)
        return path
    print(f"{path}: {'is a directory, not a file of events' if path.is_dir() else 'no such file'}",
          file=sys.stderr)
    return None


def _source(args: argparse.Namespace) -> tuple[Any, Path | None, int]:
    """``--at`` as a time, ``--events`` as a file to read (None: the store), and 2 after saying why either
    is bad usage (else 0)."""
    at, bad = _time_arg("--at", args.at)
    if bad or args.events is None:
        return at, None, bad
    path = _events_file(args.events)
    return at, path, 0 if path is not None else 2


def _until(at: Any, end: Any) -> Any:
    """The time a report on a replay is at: ``--at`` when given (before the end too), else its end."""
    return at if at is not None else end


def _print_report(args: argparse.Namespace, report: dict[str, Any], text: Callable[[dict[str, Any]], str],
                  problems: list[str]) -> int:
    """Print ``report`` (JSON, or ``text`` of it) and the replay's ``problems``; the exit code."""
    if args.json:
        _print_json(report)
    else:
        print(text(report))
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


def cmd_topics(args: argparse.Namespace) -> int:
    """Topic volumes and spikes, with the product tickets they filed (from the store, or from a replay)."""
    from bridge.model import TOPIC_KIND, utcnow
    from bridge.replay import Replay, read_events
    from bridge.report import created_at
    from bridge.rules.topics import format_topics, from_tickets, topics_report, watch_for

    at, path, bad = _source(args)
    if bad:
        return bad
    problems: list[str] = []
    if path is not None:
        config = _app(args).config
        rp = Replay(config, until=at, until_may_precede=True)
        rp.topics = watch = watch_for(config)  # (volumes even with no [topics] rules)
        spikes = [d for d in rp.run(read_events(path)) if d.get("decision") == "product_ticket"]
        problems = [f"{path}:{p.removeprefix('line ')}" for p in rp.problems]
        at = _until(at, rp.clock)
    else:
        app = _app(args)
        config = app.config
        tickets = []
        issues: dict[str, str] | None = None
        try:
            if app.has_store:  # (a fresh config's store is empty: not created by looking into it)
                with app.store.session() as tx:
                    firsts = tx.first_changes("ticket")
                    tickets = [(created_at(r, firsts[r.id].change.at), r) for r in tx.records("ticket")
                               if r.id in firsts]
                    tracker = config.topics.tracker
                    if tracker:
                        issues = {str(r.attrs.get("topic")): r.links[tracker] for r in tx.records(TOPIC_KIND)
                                  if tracker in r.links}
        finally:
            app.close()
        watch, spikes = from_tickets(config, tickets)
        at = at or utcnow()
        return _print_report(args, topics_report(config, watch, spikes, at, issues), format_topics, problems)
    return _print_report(args, topics_report(config, watch, spikes, at), format_topics, problems)


def cmd_report(args: argparse.Namespace) -> int:
    """FRT, TTR, FCR, escalation rate, volume and aging by tag, backlog, reopens, AI acceptance rate."""
    from bridge.model import utcnow
    from bridge.replay import read_events
    from bridge.report import ReportBuilder, format_report, from_replay, from_store

    at, path, bad = _source(args)
    if bad:
        return bad
    problems: list[str] = []
    if path is not None:
        builder, end = from_replay(_app(args).config, read_events(path), at, problems)
        problems = [f"{path}:{p.removeprefix('line ')}" for p in problems]
        at = _until(at, end)
    else:
        app = _app(args)
        try:
            if app.has_store:
                with app.store.session() as tx:
                    builder = from_store(tx)
            else:
                builder = ReportBuilder()
        finally:
            app.close()
        at = at or utcnow()
    return _print_report(args, builder.report(at), format_report, problems)


def cmd_taxonomy_lint(args: argparse.Namespace) -> int:
    """Lint tags: naming pattern, near-duplicates, unmapped tags, dead mappings."""
    from bridge.taxonomy import format_findings, lint

    missing = [Path(f) for f in args.files if not Path(f).exists()]
    for path in missing:
        print(f"{path}: no such file or folder", file=sys.stderr)
    if missing:
        return 2
    app = _app(args)
    seen: dict[str, int] = {}
    problems: list[str] = []
    for file in args.files:
        for tag in _tags_in_jsonl(Path(file), problems):
            seen[tag] = seen.get(tag, 0) + 1
    for problem in problems:
        print(problem, file=sys.stderr)
    if args.store and app.has_store:
        try:
            with app.store.session() as tx:
                for record in tx.records():
                    for tag in record.tags:
                        seen[tag] = seen.get(tag, 0) + 1
        finally:
            app.close()
    findings = lint(app.config, seen)
    if args.json:
        _print_json([asdict(f) for f in findings])
    else:
        print(format_findings(findings) if findings else "no findings")
    return 1 if findings else 0


def _tags_in_jsonl(path: Path, problems: list[str]) -> list[str]:
    """The tags of every record or event in a JSONL file (or a folder's); a line that cannot be read goes to
    ``problems`` with its file and line."""
    out: list[str] = []
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    for file in files:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            problems.append(f"{file}: cannot read: {exc.strerror}")
            continue
        for number, chunk in enumerate(raw.splitlines(), start=1):
            if not chunk.strip():
                continue
            try:
                data = json.loads(chunk.decode("utf-8-sig" if number == 1 else "utf-8"))
            except UnicodeDecodeError:
                problems.append(f"{file}:{number}: not UTF-8 text; skipped")
                continue
            except json.JSONDecodeError as exc:
                problems.append(f"{file}:{number}: not JSON: {exc.msg}; skipped")
                continue
            if not isinstance(data, dict):
                continue
            for holder in (data, data.get("ticket"), data.get("changes")):
                if isinstance(holder, dict) and isinstance(holder.get("tags"), list):
                    out.extend(str(t) for t in holder["tags"])
    return out


def cmd_discover(args: argparse.Namespace) -> int:
    """The remote fields of a system and how the config's mappings fit them."""
    from bridge.discover import discover, format_report

    app = _app(args)
    if args.system not in app.config.connectors:
        print(
            f"unknown system {args.system!r}; configured: {', '.join(app.config.connectors)}", file=sys.stderr
        )
        app.close()
        return 2
    try:
        report = discover(app.config, args.system, app.connector(args.system))
    finally:
        app.close()
    if args.json:
        print(report.to_json())
    else:
        print(format_report(report))
    return 1 if report.findings else 0


# ---------------------------------------------------------------------------- parser


def _common_options(target: argparse.ArgumentParser, default: Any = None) -> None:
    target.add_argument(
        "--config", default=default, help="config file (default: $BRIDGE_CONFIG, else config/bridge.toml)"
    )
    target.add_argument(
        "--json",
        action="store_true",
        default=default if default is not None else False,
        help="machine output",
    )
    target.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default if default is not None else False,
        help="log at debug level",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bridge``."""
    parser = argparse.ArgumentParser(prog="bridge", description=__doc__)
    _common_options(parser)
    # the same options after the subcommand; SUPPRESS keeps a value given before it
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", parents=[common], help="the daemon")
    p.add_argument("--once", action="store_true", help="run every job once, print the summary and exit")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", parents=[common], help="validate the config and its plugins")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("config", parents=[common], help="config helpers")
    csub = p.add_subparsers(dest="config_command", required=True)
    c = csub.add_parser("schema", parents=[common], help="print the config's JSON Schema")
    c.set_defaults(func=cmd_config_schema)

    p = sub.add_parser("plugins", parents=[common], help="installed plugins")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("sync", parents=[common], help="one sync pass now")
    p.add_argument("systems", nargs="*", metavar="SYSTEM")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("discover", parents=[common], help="remote fields of a system")
    p.add_argument("system", metavar="SYSTEM")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("replay", parents=[common], help="replay recorded events on a virtual clock")
    p.add_argument("file", metavar="EVENTS.jsonl")
    p.add_argument("--until", help="advance the clock to this time after the last event (ISO 8601)")
    p.add_argument("--against", metavar="OLD.toml", help="print only the decisions that differ from OLD.toml")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("explain", parents=[common], help="why a record has its fields")
    p.add_argument("record_id", metavar="TICKET_ID")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("topics", parents=[common], help="topic volumes and spikes, their product tickets")
    p.add_argument("--events", metavar="EVENTS.jsonl",
                   help="replay these recorded events for their topics (default: the tickets of the store)")
    p.add_argument("--at", help="the volumes at this time (ISO 8601; default: now, or the replay's end)")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("report", parents=[common], help="FRT, TTR, FCR, escalations, backlog, tags, AI")
    p.add_argument("--events", metavar="EVENTS.jsonl",
                   help="replay these recorded events for the report (default: the tickets of the store)")
    p.add_argument("--at", help="backlog and aging at this time (ISO 8601; default: now, or the replay end)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("taxonomy", parents=[common], help="tag taxonomy tools")
    tsub = p.add_subparsers(dest="taxonomy_command", required=True)
    t = tsub.add_parser("lint", parents=[common], help="lint tags")
    t.add_argument("files", nargs="*", metavar="FILE.jsonl", help="JSONL files or folders whose tags to lint")
    t.add_argument("--no-store", dest="store", action="store_false", help="do not read tags from the store")
    t.set_defaults(func=cmd_taxonomy_lint)

    p = sub.add_parser("agent-status", parents=[common], help="an agent became active, away or offline")
    p.add_argument("agent", metavar="EMAIL", help="an agent of the config's [[agents]] (any letter case)")
    p.add_argument("status", choices=AGENT_STATUSES)
    p.add_argument("--at", help="when (ISO 8601; default: now)")
    p.set_defaults(func=cmd_agent_status)

    p = sub.add_parser("deadletter", parents=[common], help="writes that failed for good")
    dsub = p.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("list", parents=[common], help="the writes that failed for good, with their reason")
    d.add_argument("--system", metavar="S", help="only this system's")
    d.set_defaults(func=cmd_deadletter, ids=[])
    d = dsub.add_parser("retry", parents=[common], help="put dead letters back in the outbox")
    d.add_argument("ids", nargs="*", metavar="ID", help="outbox ids to retry (default: all)")
    d.add_argument("--system", metavar="S", help="only this system's")
    d.set_defaults(func=cmd_deadletter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bridge`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    root = logging.getLogger()
    level = root.level  # put back at the end: main may run in-process; [bridge] log_level is this run's
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # migration and job chatter on every start and run; httpx's INFO line of each request carries its whole
    # URL, query included (a search by a customer's email): bridge.http logs calls without it
    for chatty in ("alembic", "apscheduler", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    handler: Handler = args.func
    try:
        return handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except StoreError as exc:  # FILE:LINE: bridge.database: why, as a config problem reads
        print(exc, file=sys.stderr)
        return 1
    except sqlalchemy.exc.DatabaseError as exc:
        # the database failed under a command (a disk error, a corrupt file, a server gone): the first line
        # of what the driver said (no statement, no parameters), not a traceback
        from bridge.store.store import driver_reason

        print(f"error: bridge.database: the database failed: {driver_reason(exc)}", file=sys.stderr)
        logging.getLogger("bridge").debug("the database failed", exc_info=True)  # (-v: where)
        return 1
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`bridge ... | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        root.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_parser", "main"]
