"""HTTP for ``bridge run``: webhooks (``POST /webhooks/SYSTEM``, signed), agents' status changes
(``POST /agents/status``, signed alike), ``/healthz``, ``/metrics``.

A webhook's changes go through the same pipeline as a pull, in one transaction (each change in a savepoint).
Answers: 202 with the count accepted and per-change problems; 400 with the reason for a malformed body or a
bad ``Content-Length``; 401 for a bad signature; 404 for an unknown system; 411 without ``Content-Length``;
413 for a body over ``MAX_BODY``; 500 only for an internal error (the details go to the log, not the answer).
When ``[bridge] webhook_secret`` (or ``webhook_secret_env``, ``webhook_secret_file``) is set, every webhook
must carry ``X-Bridge-Signature: sha256=<hex HMAC of the body>``. No answer ever contains the secret.

``POST /agents/status`` takes ``{"agent": EMAIL, "status": "active"|"away"|"offline", "at": TIME}`` (``at``
optional: now) and keeps it in the change log for the rules (:func:`bridge.scheduler.record_agent_status`):
202 with what was recorded, 400 naming what is wrong (malformed, an unknown status, an agent not in
``[[agents]]``), 401 for a bad signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bridge.errors import (
    BridgeError,
    ConfigError,
    ConnectorAuthError,
    ConnectorStartError,
    FatalConnectorError,
    RetriableConnectorError,
    SkippableRecordError,
)
from bridge.model import Change, format_time, utcnow
from bridge.pipeline import Outcome, Pipeline
from bridge.settings import pasted_problem, pasted_secret

if TYPE_CHECKING:
    from bridge.app import App

log = logging.getLogger("bridge.server")
MAX_BODY = 5 * 1024 * 1024
READ_TIMEOUT = 30.0  # seconds a client may take to send its headers and body
_DIGITS = re.compile(r"[0-9]{1,19}")
# what processing one change may raise on bad data: that change is skipped and reported, the rest go on
_CHANGE_ERRORS = (BridgeError, ValueError, TypeError, KeyError, LookupError, ArithmeticError)


def webhook_secret(app: App) -> bytes | None:
    """The shared secret webhooks are signed with, if one is configured.

    Raises ConfigError when ``webhook_secret_env`` names a variable that is not set: the server must not
    quietly take unsigned requests that the admin meant to be signed.
    """
    cfg = app.config.bridge
    if cfg.webhook_secret is not None:
        return cfg.webhook_secret.get_secret_value().encode()
    if cfg.webhook_secret_env:
        value = os.environ.get(cfg.webhook_secret_env)
        if pasted_secret(cfg.webhook_secret_env):
            where = app.loaded.where("bridge", "webhook_secret_env")
            raise ConfigError([f"{where}: {pasted_problem('secret')}"])
        if not value:
            where = app.loaded.where("bridge", "webhook_secret_env")
            raise ConfigError([f"{where}: ${cfg.webhook_secret_env} is not set: the HTTP server would take "
                               "webhooks and agent status changes unsigned; set it, or remove the key"])
        return value.encode()
    if cfg.webhook_secret_file:
        where = app.loaded.where("bridge", "webhook_secret_file")
        try:
            value = Path(cfg.webhook_secret_file).read_text(encoding="utf-8-sig").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            # (the file is not named: what is written there may be the secret itself, pasted)
            raise ConfigError([f"{where}: cannot read the secret file it names ({why}): the HTTP server "
                               "would take webhooks and agent status changes unsigned"]) from None
        if not value:
            raise ConfigError([f"{where}: the secret file it names is empty"])
        return value.encode()
    return None


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Bridge-Signature`` value for a body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def parse_content_length(value: str | None) -> int | None:
    """The body length a ``Content-Length`` header gives, None when absent; ValueError when malformed."""
    if value is None:
        return None
    text = value.strip()
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"bad Content-Length {value[:40]!r}: expected a non-negative integer")
    return int(text)


class _Listener(ThreadingHTTPServer):
    # a helpdesk sends webhooks in bursts (a bulk edit, a macro on 100 tickets): the standard library's
    # backlog of 5 connections waiting to be accepted resets the rest, which the sender may not retry
    request_queue_size = 128


class Server:
    """The HTTP side of the daemon, on a thread of its own."""

    def __init__(self, app: App, host: str | None = None, port: int | None = None) -> None:
        self.app = app
        self.pipeline = Pipeline(app.config, app.host, run="webhook")
        self.secret = webhook_secret(app)
        self.lock = threading.Lock()  # SQLite takes one writer at a time
        self.received = 0
        handler = _handler(self)
        address = (host or app.config.bridge.http_host, app.config.bridge.http_port if port is None else port)
        try:
            self.httpd = _Listener(address, handler)
        except OSError as exc:  # the port taken, the host not this machine's
            where = app.loaded.where("bridge", "http_port")
            problem = f"{where}: cannot listen on {address[0]}:{address[1]}: {exc.strerror}"
            raise ConfigError([problem]) from None
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.1},  # how soon stop() returns
            name="bridge-http",
            daemon=True,
        )

    @property
    def address(self) -> tuple[str, int]:
        """The host and port actually bound."""
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve in the background."""
        self.thread.start()
        log.info("listening on http://%s:%d", *self.address)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def redact(self, text: str) -> str:
        """``text`` with the webhook secret blanked out, should a message ever quote it."""
        if self.secret:
            secret = self.secret.decode(errors="replace")
            if secret:
                text = text.replace(secret, "***")
        return text

    def signed(self, headers: dict[str, str], body: bytes) -> bool:
        """Whether the body carries the right ``X-Bridge-Signature`` (always, when no secret is set)."""
        if self.secret is None:
            return True
        # compare bytes: a str holding non-ASCII would make compare_digest raise
        given = headers.get("x-bridge-signature", "").encode("utf-8", errors="replace")
        return hmac.compare_digest(given, sign(self.secret, body).encode())

    def handle_agent_status(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Record one agent's status change; returns (HTTP status, JSON answer). Internal errors propagate."""
        from bridge.scheduler import agent_status_request, record_agent_status

        if not self.signed(headers, body):
            return 401, {"error": "bad or missing X-Bridge-Signature"}
        now = utcnow()
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return 400, {"error": f"agents/status: malformed JSON: {exc}"}
        try:
            agent, status, at = agent_status_request(self.app.config, payload, now)
        except ValueError as exc:
            return 400, {"error": f"agents/status: {exc}"}
        with self.lock:
            done = record_agent_status(self.app, agent, status, at, now)
        log.info("agent %s is %s from %s (change %d)", agent, status, format_time(at), done.change_id)
        return 202, {
            "agent": agent,
            "status": status,
            "at": format_time(at),
            "taken": done.taken,
            "writes_queued": len(done.writes),
        }

    def handle_webhook(self, system: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Process one webhook; returns (HTTP status, JSON answer). Internal errors propagate."""
        if not self.signed(headers, body):
            return 401, {"error": "bad or missing X-Bridge-Signature"}
        if system not in self.app.config.connectors:
            return 404, {"error": f"no connector named {system!r} is configured"}
        try:
            connector = self.app.connector(system)
        except ConnectorStartError as exc:  # (the sender may retry later)
            log.error("webhook %s", exc)
            return 503, {"error": f"{system}: the connector did not start; see the bridge log"}
        try:
            changes = connector.parse_webhook(headers, body)
        except NotImplementedError as exc:
            return 404, {"error": str(exc)}
        except (ValueError, KeyError, TypeError, RecursionError, SkippableRecordError) as exc:
            return 400, {"error": f"{system}: malformed webhook: {exc}"}
        except (RetriableConnectorError, ConnectorAuthError, FatalConnectorError) as exc:
            # a webhook that names a record the connector reads from its system, which failed: nothing is
            # wrong with the body, so the sender is told to send it again later
            log.error("webhook %s: %s", system, exc)
            return 503, {"error": f"{system}: could not read what the webhook names; try again later"}
        processed, problems = 0, []
        done: list[tuple[Change, Outcome]] = []
        carried = connector.settings.kinds
        with self.lock:
            with self.app.store.session() as tx:
                for change in changes:
                    if self.pipeline.tombstone(tx, change):
                        log.info("webhook %s %s: %s was deleted there before bridge had it: left alone",
                                 system, change.kind, change.external_id)
                        continue
                    if carried and change.kind not in carried:
                        # (a sender's misconfiguration: taken, a ticket would hold an agent's seat while
                        # nothing of it could be written back)
                        problems.append(
                            f"{change.system} {change.kind} {change.external_id}: not taken: {system} "
                            f"carries {', '.join(carried)} (its kinds), not {change.kind}"
                        )
                        continue
                    try:
                        with tx.savepoint():
                            outcome = self.pipeline.process(tx, change, utcnow())
                    except _CHANGE_ERRORS as exc:
                        where = f"{change.system} {change.kind} {change.external_id}"
                        log.warning("webhook: %s: not processed: %s", where, exc)
                        problems.append(f"{where}: not processed: {exc}")
                        continue
                    problems.extend(outcome.problems)
                    done.append((change, outcome))
                    processed += 1
            self.received += processed
        for change, outcome in done:  # after the commit, like a pull
            self.app.host.change_processed(outcome.record, change, outcome.decisions)
        return 202, {"accepted": processed, "problems": problems}

    def metrics(self) -> str:
        """Prometheus text: outbox depth, dead letters, webhooks received."""
        pending = len(self.app.store.pending())
        claimed = len(self.app.store.items(status="claimed"))
        dead = len(self.app.store.dead_letters())
        return (
            "# TYPE bridge_outbox_pending gauge\n"
            f"bridge_outbox_pending {pending}\n"
            "# TYPE bridge_outbox_claimed gauge\n"
            f"bridge_outbox_claimed {claimed}\n"
            "# TYPE bridge_outbox_dead gauge\n"
            f"bridge_outbox_dead {dead}\n"
            "# TYPE bridge_webhook_changes_total counter\n"
            f"bridge_webhook_changes_total {self.received}\n"
        )


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = READ_TIMEOUT  # a client that stalls mid-request must not hold a thread forever

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, answer: dict[str, Any]) -> None:
            self._send(status, server.redact(json.dumps(answer)).encode())

        def _internal_error(self, what: str) -> None:
            log.exception("%s failed", what)
            self.close_connection = True
            self._json(500, {"error": "internal error; see the bridge log"})

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            try:
                if path == "/healthz":
                    self._send(200, b'{"ok": true}')
                elif path == "/metrics":
                    self._send(200, server.metrics().encode(), "text/plain; version=0.0.4")
                else:
                    self._send(404, b'{"error": "not found"}')
            except Exception:  # answer 500 and keep serving
                self._internal_error(f"GET {path}")

        def do_POST(self) -> None:
            parts = urlsplit(self.path).path.strip("/").split("/")
            agents = parts == ["agents", "status"]
            if not agents and (len(parts) != 2 or parts[0] != "webhooks" or not parts[1]):
                self.close_connection = True  # the body is left unread
                self._send(404, b'{"error": "POST /webhooks/SYSTEM or POST /agents/status"}')
                return
            system = parts[1]
            try:
                length = parse_content_length(self.headers.get("Content-Length"))
            except ValueError as exc:
                self.close_connection = True
                self._json(400, {"error": str(exc)})
                return
            if length is None:
                self.close_connection = True
                self._json(411, {"error": "Content-Length required"})
                return
            if length > MAX_BODY:
                self.close_connection = True
                self._json(413, {"error": f"body too large: {length} bytes, at most {MAX_BODY}"})
                return
            try:
                body = self.rfile.read(length)
            except TimeoutError:
                self.close_connection = True
                self._json(408, {"error": f"body not received within {READ_TIMEOUT:g}s"})
                return
            if len(body) < length:
                self.close_connection = True
                self._json(400, {"error": f"body ended after {len(body)} of {length} bytes"})
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                if agents:
                    status, answer = server.handle_agent_status(headers, body)
                else:
                    status, answer = server.handle_webhook(system, headers, body)
            except Exception:  # answer 500 and keep serving; the sender retries
                self._internal_error("agent status" if agents else f"webhook for {system}")
                return
            self._json(status, answer)

    return Handler
