"""Replay throughput and memory: N tickets of JSONL through ``bridge replay`` with a 100-rule config.

Prints, for the main size: the time to merely ``json.loads`` every line, the replay time (pipeline + Desk),
the ratio (goal <= 5x), the Desk's own share (the same events straight into the Desk, no pipeline) and the
replay of the same events with no rules at all, and the floor: what any replay must do besides deciding
(parse, times, a state per ticket, the output dicts). Then peak memory of a replay at each memory size and
their ratio (goal <= 1.2x: closed tickets are dropped once their final state is out, so memory follows the
open tickets, not the length of the recording).

    .venv/bin/python benchmarks/bench_replay.py                       # 100k tickets; memory 100k vs 1M
    .venv/bin/python benchmarks/bench_replay.py --tickets 20000 --memory 20000,200000
    .venv/bin/python benchmarks/bench_replay.py --skip-speed --tracemalloc   # also the traced heap peaks

Each memory size runs in a child process of its own, so that its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.model import Record, format_time, parse_time
from bridge.replay import Replay
from bridge.rules.engine import Desk
from bridge.settings import Config

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
GAP = timedelta(seconds=30)  # one new ticket every 30 s: ~2,900 a day, whatever the length of the recording
TIERS = ("enterprise", "growth", "starter", "free")
TOPICS = (
    "billing/refund",
    "billing/invoice",
    "access/sso",
    "access/password",
    "bug/api",
    "bug/ui",
    "feature/export",
    "how-to/setup",
    "bug/sev1",
)
WORDS = (
    "invoice",
    "refund",
    "login",
    "crash",
    "slow",
    "export",
    "thanks",
    "broken",
    "urgent",
    "charged twice",
    "password",
    "sso",
    "okta",
    "webhook",
    "timeout",
    "csv",
    "report",
    "dashboard",
    "seat",
    "upgrade",
    "downgrade",
    "cancel",
    "lawyer",
    "gdpr",
    "delete",
    "api key",
    "rate limit",
    "mobile",
    "android",
    "ios",
    "billing",
    "vat",
    "receipt",
    "card",
    "declined",
    "trial",
    "plan",
    "team",
    "invite",
    "permissions",
)
SKILLS = ("billing", "access", "bug", "feature", "how-to")


def make_config(n_rules: int = 100) -> Config:
    """A config like a real one: rules over tiers, sentiment, tags, text, ARR, severity; 3 SLAs; 30 agents."""
    rng = random.Random(7)
    rules: list[dict[str, Any]] = []
    for i in range(n_rules):
        kind = i % 6
        tier = TIERS[i % len(TIERS)]
        if kind == 0:
            when: dict[str, Any] = {
                "all": [
                    {"field": "account.tier", "eq": tier},
                    {"field": "ticket.sentiment", "lte": -20 - (i % 50)},
                ]
            }
            then: list[dict[str, Any]] = [{"escalate": "team-leads"}, {"set": {"priority": "urgent"}}]
            rset = "escalation"
        elif kind == 1:
            topic = TOPICS[i % len(TOPICS)]
            when = {
                "any": [
                    {"tag": topic.split("/")[0] + "/*"},
                    {"field": "ticket.text", "contains": WORDS[i % len(WORDS)]},
                ]
            }
            then = [{"assign": {"skill": SKILLS[i % len(SKILLS)]}}]
            rset = "routing"
        elif kind == 2:
            when = {
                "all": [
                    {"field": "account.arr", "gte": 50000 + 1000 * i},
                    {"field": "ticket.priority", "in": ["high", "urgent"]},
                ]
            }
            then = [{"add_tags": [f"vip/arr-{i % 3}"]}]
            rset = "triggers"
        elif kind == 3:
            when = {
                "field": "ticket.text",
                "matches": rf"(?i)\b({WORDS[(i * 7) % len(WORDS)]}|lawyer|cancel\w*)\b",
            }
            then = [{"set": {"severity": "Sev-2"}}]
            rset = "triggers"
        elif kind == 4:
            when = {"all": [{"tag": "bug/sev1"}, {"none": [{"field": "account.tier", "eq": "free"}]}]}
            then = [{"escalate": "incident"}, {"set": {"severity": "Sev-1"}}]
            rset = "escalation"
        else:
            when = {
                "all": [
                    {"field": "requester.language", "eq": rng.choice(["fr", "de", "es"])},
                    {"field": "ticket.channel", "in": ["email", "chat"]},
                ]
            }
            then = [{"assign": {"language": "fr"}}]
            rset = "routing"
        rules.append({"name": f"rule-{i:03d}", "set": rset, "priority": i % 17, "when": when, "then": then})
    agents = [
        {
            "email": f"agent{n}@example.com",
            "skills": [SKILLS[n % 5], SKILLS[(n + 2) % 5]],
            "languages": ["en", "fr"] if n % 3 == 0 else ["en"],
            "capacity": 400,
        }
        for n in range(30)
    ]
    return Config(
        fields={
            "severity": {"type": "select", "options": ["Sev-1", "Sev-2", "Sev-3"]},
            "product_area": {
                "type": "multi_select",
                "options": ["Billing", "Access & Security", "API"],
                "aliases": {"Billing": ["billing"]},
            },
        },
        tags=[
            {"match": "billing/*", "set": {"product_area": "Billing"}},
            {"match": "bug/sev1", "set": {"severity": "Sev-1"}},
        ],
        sla=[
            {
                "name": "enterprise",
                "when": {"field": "account.tier", "eq": "enterprise"},
                "first_response": "1h",
                "next_response": "4h",
                "resolution": "2d",
                "warn_before": "15m",
                "escalate": [{"after": "1h", "to": "team-leads"}],
            },
            {
                "name": "urgent",
                "when": {"field": "ticket.priority", "eq": "urgent"},
                "first_response": "2h",
                "resolution": "3d",
            },
            {"name": "standard", "first_response": "8h", "resolution": "5d"},
        ],
        rules=rules,
        routing={
            "strategy": "least_loaded",
            "fallback": "round_robin",
            "tier_order": ["enterprise", "growth"],
        },
        teams={
            "team-leads": {"members": ["agent0@example.com"]},
            "incident": {"members": ["agent1@example.com"]},
        },
        agents=agents,
        follow_up={"after": "48h"},
        auto_close={"after": "1d"},
    )


def events(n: int, seed: int = 1) -> Iterator[dict[str, Any]]:
    """``n`` tickets' events in time order: created, agent reply, customer reply, resolved (auto-closed)."""
    rng = random.Random(seed)
    pending: list[tuple[datetime, int, dict[str, Any]]] = []
    seq = 0
    for i in range(n):
        at = START + GAP * i
        while pending and pending[0][0] <= at:
            yield heapq.heappop(pending)[2]
        tid = f"T-{i}"
        account = rng.randrange(2000)
        tier = TIERS[account % 4]
        yield {
            "type": "ticket.created",
            "at": format_time(at),
            "ticket": {
                "id": tid,
                "channel": rng.choice(["email", "chat", "web"]),
                "subject": f"{rng.choice(WORDS)} problem",
                "body": f"Hello, {rng.choice(WORDS)} again with {rng.choice(WORDS)}",
                "tags": [rng.choice(TOPICS)],
                "priority": rng.choice(["normal", "normal", "high", "urgent"]),
                "status": "open",
                "sentiment": rng.randrange(-90, 60),
                "requester": {
                    "email": f"c{i}@acct{account}.example",
                    "language": rng.choice(["en", "en", "fr", "de"]),
                },
                "account": {
                    "id": f"A-{account}",
                    "tier": tier,
                    "arr": 1000 * (account % 300),
                    "owner": f"agent{account % 30}@example.com",
                },
            },
        }
        later = [
            (
                timedelta(minutes=rng.randrange(5, 90)),
                {"type": "ticket.message", "ticket_id": tid, "author": "agent", "body": "Looking into it"},
            ),
            (
                timedelta(minutes=rng.randrange(95, 240)),
                {
                    "type": "ticket.message",
                    "ticket_id": tid,
                    "author": "customer",
                    "body": "Thanks, still broken",
                    "sentiment": rng.randrange(-80, 40),
                },
            ),
            (
                timedelta(minutes=rng.randrange(250, 600)),
                {"type": "ticket.status", "ticket_id": tid, "status": "resolved"},
            ),
        ]
        for delta, ev in later:
            seq += 1
            ev["at"] = format_time(at + delta)
            heapq.heappush(pending, (at + delta, seq, ev))
    while pending:
        yield heapq.heappop(pending)[2]


def write_events(path: Path, n: int) -> int:
    lines = 0
    with path.open("w", encoding="utf-8") as fh:
        for ev in events(n):
            fh.write(json.dumps(ev) + "\n")
            lines += 1
    return lines


def parse_only(path: Path) -> float:
    t = time.perf_counter()
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            json.loads(line)
    return time.perf_counter() - t


def floor_only(path: Path, outputs: int) -> float:
    """The least any replay must do besides deciding: parse each line and its time, keep a state per ticket,
    build ``outputs`` output dicts with a formatted time, spread over the events as the replay made them.

    What is left of the 5x budget after this is what classification, tag mapping, rules, routing, SLA clocks,
    timers and finals may cost together.
    """
    lines = sum(1 for _ in path.open(encoding="utf-8"))
    per_event, extra = divmod(outputs, lines)
    t = time.perf_counter()
    state: dict[str, dict[str, Any]] = {}
    made = 0
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            ev = json.loads(line)
            at = parse_time(ev["at"])
            if ev["type"] == "ticket.created":
                tk = ev["ticket"]
                st = state[tk["id"]] = {"tags": list(tk["tags"]), "attrs": dict(tk)}
            else:
                st = state[ev["ticket_id"]]
            for _ in range(per_event + (n < extra)):
                made += len({"at": format_time(at), "ticket_id": ev.get("ticket_id"), "decision": "assign",
                             "rule": "routing", "to": st["tags"][0]})
    return time.perf_counter() - t


def replay(config: Config, path: Path) -> tuple[float, int]:
    t = time.perf_counter()
    out = 0
    rp = Replay(config, until=None)
    with path.open(encoding="utf-8") as fh:
        for _ in rp.run(fh):
            out += 1
    return time.perf_counter() - t, out


def desk_only(config: Config, path: Path, *, stream: bool = False) -> float:
    """The same events straight into the Desk (records built here, no pipeline): the rules engine's share.

    Closed tickets are forgotten as replay does. ``stream`` reads lines as it goes (for memory figures);
    otherwise the file is parsed first so that the time is the Desk's alone.
    """
    desk = Desk(config)
    tickets: dict[str, Record] = {}
    with path.open(encoding="utf-8") as fh:
        lazy = (json.loads(line) for line in fh)
        source: Iterable[Any] = lazy if stream else list(lazy)
        t = time.perf_counter()
        for ev in source:
            at = parse_time(ev["at"])
            while (due := desk.next_timer()) is not None and due <= at:
                for d in desk.advance(due):
                    if d.decision == "auto_close":
                        desk.forget(d.record_id)
                        tickets.pop(d.record_id, None)
            kind = ev["type"]
            if kind == "ticket.created":
                tk = ev["ticket"]
                keys = ("subject", "body", "priority", "status", "channel", "sentiment", "requester",
                        "account")
                rec = Record(tk["id"], "ticket", tags=list(tk["tags"]), attrs={k: tk[k] for k in keys})
                rec.attrs["created_at"] = at
                tickets[rec.id] = rec
                desk.on_ticket(rec, {}, ev, at)
                continue
            rec = tickets[ev["ticket_id"]]
            previous: dict[str, Any] = {}
            if kind == "ticket.status":
                previous["ticket.status"] = rec.attrs["status"]
                rec.attrs["status"] = ev["status"]
            elif "sentiment" in ev:
                previous["ticket.sentiment"] = rec.attrs.get("sentiment")
                rec.attrs["sentiment"] = ev["sentiment"]
            desk.on_ticket(rec, previous, ev, at)
        return time.perf_counter() - t


def peak_memory(config: Config, path: Path) -> int:
    gc.collect()
    tracemalloc.start()
    rp = Replay(config)
    with path.open(encoding="utf-8") as fh:
        for out in rp.run(fh):
            if out.get("final"):
                break  # finals come last; the spool of closed tickets is on disk
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def _status_kb(name: str) -> int:
    """A figure of /proc/self/status in kB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def _reset_peak() -> int:
    """Start the peak-RSS count afresh (Linux: a forked child inherits its parent's peak); the RSS now, kB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


def _child_memory(n: int, rules: int, traced: bool) -> None:
    """In a fresh process: write ``n`` tickets, replay them, print peak RSS (and the traced peak) as JSON."""
    config = make_config(rules)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"mem-{n}.jsonl"
        write_events(path, n)
        gc.collect()
        base = _reset_peak()
        t = time.perf_counter()
        traced_peak = peak_memory(config, path) if traced else 0
        if not traced:
            rp = Replay(config)
            with path.open(encoding="utf-8") as fh:
                for out in rp.run(fh):
                    if out.get("final"):
                        break
        seconds = time.perf_counter() - t
        rss = _status_kb("VmHWM")
    print(json.dumps({"tickets": n, "rss_kb": rss, "rss_before_kb": base, "traced": traced_peak,
                      "seconds": seconds}))


def measure_memory(n: int, rules: int, traced: bool) -> dict[str, Any]:
    """Run :func:`_child_memory` in a child process (peak RSS is per process) and return its figures."""
    cmd = [sys.executable, __file__, "--child-memory", str(n), "--rules", str(rules)]
    if traced:
        cmd.append("--tracemalloc")
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=100_000)
    ap.add_argument("--memory", default="100000,1000000", help="ticket counts to compare peak memory at")
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--skip-speed", action="store_true", help="only the memory figures")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="also trace Python allocations (exact heap peak; several times slower)")
    ap.add_argument("--child-memory", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_memory:
        _child_memory(args.child_memory, args.rules, args.tracemalloc)
        return 0
    config = make_config(args.rules)
    if not args.skip_speed:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "events.jsonl"
            lines = write_events(path, args.tickets)
            size = path.stat().st_size / 1e6
            print(f"{args.tickets:,} tickets, {lines:,} events, {size:.1f} MB, {len(config.rules)} rules")
            parse_s = parse_only(path)
            replay_s, outputs = replay(config, path)
            desk_s = desk_only(config, path)
            bare_s, _ = replay(make_config(0), path)
            floor_s = floor_only(path, outputs)
            print(f"json parse only : {parse_s:7.2f} s")
            print(f"replay          : {replay_s:7.2f} s  ({outputs:,} out, {lines / replay_s:,.0f} events/s)")
            print(f"ratio           : {replay_s / parse_s:7.2f} x   (goal <= 5x)")
            print(f"desk alone      : {desk_s:7.2f} s  ({desk_s / parse_s:.2f} x parse)")
            bare = f"{bare_s / parse_s:.2f} x parse: pipeline, routing, SLA, timers, output"
            print(f"replay, no rules: {bare_s:7.2f} s  ({bare})")
            floor = f"{floor_s / parse_s:.2f} x parse: parse, times, a state per ticket, the output dicts"
            print(f"floor           : {floor_s:7.2f} s  ({floor})", flush=True)
    sizes = [int(x) for x in args.memory.split(",") if x]
    figures = []
    for n in sizes:
        f = measure_memory(n, args.rules, args.tracemalloc)
        figures.append(f)
        traced = f", traced heap peak {f['traced'] / 1e6:7.1f} MB" if f["traced"] else ""
        print(f"peak memory {n:>9,} tickets: RSS {f['rss_kb'] / 1e3:7.1f} MB (interpreter and config before "
              f"the replay {f['rss_before_kb'] / 1e3:.1f} MB){traced}  [{f['seconds']:.0f} s]", flush=True)
    if len(figures) >= 2:
        first, last = figures[0], figures[-1]
        grown = (last["rss_kb"] - last["rss_before_kb"]) / max(1, first["rss_kb"] - first["rss_before_kb"])
        rss = last["rss_kb"] / first["rss_kb"]
        line = f"memory ratio    : RSS {rss:.2f} x, RSS above the start {grown:.2f} x"
        if first["traced"]:
            line += f", traced heap {last['traced'] / first['traced']:.2f} x"
        print(line + "   (goal <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
