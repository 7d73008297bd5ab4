"""HTTP for ``bridge run``: webhooks (``POST /webhooks/SYSTEM``, signed), ``/healthz``, ``/metrics``.

A webhook's changes go through the same pipeline as a pull, in one transaction; a malformed body answers 400
with the reason, an unknown system 404, a bad signature 401. When ``[bridge] webhook_secret`` (or
``webhook_secret_env``) is set, every request must carry
``X-Bridge-Signature: sha256=<hex HMAC of the body>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from bridge.errors import BridgeError
from bridge.model import utcnow
from bridge.pipeline import Pipeline

if TYPE_CHECKING:
    from bridge.app import App

log = logging.getLogger("bridge.server")
MAX_BODY = 5 * 1024 * 1024


def webhook_secret(app: App) -> bytes | None:
    """The shared secret webhooks are signed with, if one is configured."""
    cfg = app.config.bridge
    if cfg.webhook_secret is not None:
        return cfg.webhook_secret.get_secret_value().encode()
    if cfg.webhook_secret_env:
        value = os.environ.get(cfg.webhook_secret_env)
        return value.encode() if value else None
    return None


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Bridge-Signature`` value for a body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Server:
    """The HTTP side of the daemon, on a thread of its own."""

    def __init__(self, app: App, host: str | None = None, port: int | None = None) -> None:
        self.app = app
        self.pipeline = Pipeline(app.config, app.host, run="webhook")
        self.secret = webhook_secret(app)
        self.lock = threading.Lock()  # SQLite takes one writer at a time
        self.received = 0
        handler = _handler(self)
        self.httpd = ThreadingHTTPServer(
            (host or app.config.bridge.http_host, app.config.bridge.http_port if port is None else port),
            handler,
        )
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="bridge-http", daemon=True)

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

    def handle_webhook(self, system: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Process one webhook; returns (HTTP status, JSON answer)."""
        if system not in self.app.config.connectors:
            return 404, {"error": f"no connector named {system!r} is configured"}
        if self.secret is not None:
            given = headers.get("x-bridge-signature", "")
            if not hmac.compare_digest(given, sign(self.secret, body)):
                return 401, {"error": "bad or missing X-Bridge-Signature"}
        connector = self.app.connector(system)
        try:
            changes = connector.parse_webhook(headers, body)
        except NotImplementedError as exc:
            return 404, {"error": str(exc)}
        except (ValueError, KeyError, TypeError) as exc:
            return 400, {"error": f"{system}: malformed webhook: {exc}"}
        processed, problems = 0, []
        with self.lock, self.app.store.session() as tx:
            for change in changes:
                try:
                    outcome = self.pipeline.process(tx, change, utcnow())
                except BridgeError as exc:
                    problems.append(str(exc))
                    continue
                problems.extend(outcome.problems)
                processed += 1
        self.received += processed
        return 202, {"accepted": processed, "problems": problems}

    def metrics(self) -> str:
        """Prometheus text: outbox depth, dead letters, webhooks received."""
        pending = len(self.app.store.pending())
        dead = len(self.app.store.dead_letters())
        return (
            "# TYPE bridge_outbox_pending gauge\n"
            f"bridge_outbox_pending {pending}\n"
            "# TYPE bridge_outbox_dead gauge\n"
            f"bridge_outbox_dead {dead}\n"
            "# TYPE bridge_webhook_changes_total counter\n"
            f"bridge_webhook_changes_total {self.received}\n"
        )


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, b'{"ok": true}')
            elif self.path == "/metrics":
                self._send(200, server.metrics().encode(), "text/plain; version=0.0.4")
            else:
                self._send(404, b'{"error": "not found"}')

        def do_POST(self) -> None:
            parts = self.path.strip("/").split("/")
            if len(parts) != 2 or parts[0] != "webhooks":
                self._send(404, b'{"error": "POST /webhooks/SYSTEM"}')
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, b'{"error": "body too large"}')
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, answer = server.handle_webhook(parts[1], headers, body)
            except Exception as exc:  # answer 500 and keep serving; the sender retries
                log.exception("webhook for %s failed", parts[1])
                status, answer = 500, {"error": f"{type(exc).__name__}: {exc}"}
            self._send(status, json.dumps(answer).encode())

    return Handler
