"""The one HTTP policy every connector uses: client settings, retries, rate limits and error classification.

``build_client`` makes the httpx client a connector talks through (base URL, timeouts, CA bundle, User-Agent,
logging hooks that never show secrets). ``call_with_policy`` runs any call (an httpx request or a vendor
library's method), turns its failure into the connector error tree and retries the retriable ones with
exponential backoff and jitter. ``TokenBucket`` paces calls and learns from the vendors' rate-limit headers.
Vendor libraries get their own retries turned off so that this is the only retry loop.

Sleeps and clocks are injected: tests record the sleeps instead of sleeping.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from bridge import __version__
from bridge.errors import (
    BatchRefusedError,
    ConnectorAuthError,
    ConnectorError,
    FatalConnectorError,
    RetriableConnectorError,
    SkippableRecordError,
)
from bridge.settings import ConnectorSettings

log = logging.getLogger("bridge.http")

T = TypeVar("T")
Sleep = Callable[[float], None]
Monotonic = Callable[[], float]

USER_AGENT = f"bridge/{__version__}"
# Salesforce's daily limit: its answer to an exhausted org; waiting minutes does not help
DAILY_LIMIT_WAIT = 3600.0
_LIMIT_CODES = ("REQUEST_LIMIT_EXCEEDED", "TOO_MANY_REQUESTS")


class PolicySettings(ConnectorSettings):
    """Connector settings plus the retry keys every HTTP connector accepts."""

    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_wait: float = 120.0


def build_client(
    settings: ConnectorSettings,
    *,
    system: str,
    transport: httpx.BaseTransport | None = None,
    bucket: TokenBucket | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Client:
    """An httpx client configured from a connector's settings.

    :param settings: ``base_url``, ``timeout`` and ``ca_bundle`` (a CA file that wins over the environment).
    :param system: the configured system name, used in log lines.
    :param transport: a transport to use instead of the network (tests, mocks).
    :param bucket: a token bucket fed from every response's rate-limit headers.
    :param headers: extra default headers (authentication); they are never logged.
    """

    def on_request(request: httpx.Request) -> None:
        log.debug("%s: %s %s", system, request.method, request.url.path)

    def on_response(response: httpx.Response) -> None:
        log.debug(
            "%s: %s %s -> %s",
            system,
            response.request.method,
            response.request.url.path,
            response.status_code,
        )
        if bucket is not None:
            bucket.observe(response.headers)

    # an SSLContext from the bundle: httpx deprecates verify=<path>, and the file must win over SSL_CERT_FILE
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=settings.ca_bundle) if settings.ca_bundle else True
    )
    return httpx.Client(
        base_url=settings.base_url or "",
        timeout=httpx.Timeout(settings.timeout),
        verify=verify,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        transport=transport,
        event_hooks={"request": [on_request], "response": [on_response]},
        # proxies (HTTPS_PROXY, NO_PROXY) from the environment; a CA bundle, given as an SSLContext, still
        # wins over SSL_CERT_FILE and friends (httpx reads them only for verify=True)
        trust_env=True,
    )


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``), for
    clients that do not read it themselves."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


@dataclass
class RetryPolicy:
    """How often and how long to retry a retriable failure.

    The n-th retry waits ``Retry-After`` when the vendor gave one, else a random share (full jitter) of
    ``min(cap, base * 2**(n-1))``. A ``Retry-After`` longer than ``max_wait`` is not waited for here: the
    error goes up so that the core pauses the system instead of holding a worker.
    """

    max_attempts: int = 4
    base: float = 0.5
    cap: float = 30.0
    sleep: Sleep = time.sleep
    max_wait: float = 120.0
    rand: Callable[[], float] = random.random

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return max(0.0, retry_after)
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return float(ceiling * self.rand())


@dataclass
class TokenBucket:
    """A token bucket pacing calls to one system, corrected by the vendor's rate-limit headers.

    ``rate`` tokens per second refill the bucket up to ``burst``. ``observe`` reads ``Retry-After``,
    HubSpot's ``X-HubSpot-RateLimit-Remaining``/``-Interval-Milliseconds``,
    ``X-RateLimit-Remaining``/``Reset`` (Pipedrive and others) and Salesforce's daily ``Sforce-Limit-Info``
    (kept as ``daily_used``/``daily_total``).
    """

    rate: float = 10.0
    burst: int = 10
    clock: Monotonic = time.monotonic
    sleep: Sleep = time.sleep
    tokens: float = field(init=False)
    paused_until: float = field(init=False, default=0.0)
    daily_used: int | None = field(init=False, default=None)
    daily_total: int | None = field(init=False, default=None)
    _last: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)
        self._last = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self._last) * self.rate)
        self._last = now

    def acquire(self) -> float:
        """Take one token, sleeping (injected) until one is there; returns the seconds slept."""
        slept = 0.0
        now = self.clock()
        if self.paused_until > now:
            wait = self.paused_until - now
            self.sleep(wait)
            slept += wait
        self._refill()
        if self.tokens < 1.0:
            wait = (1.0 - self.tokens) / self.rate if self.rate > 0 else 1.0
            self.sleep(wait)
            slept += wait
            self._refill()
            self.tokens = max(self.tokens, 1.0)
        self.tokens -= 1.0
        return slept

    def pause(self, seconds: float) -> None:
        """Hold every call for ``seconds`` from now."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)
        self.tokens = 0.0

    @property
    def daily_remaining(self) -> int | None:
        """Calls left in the vendor's daily budget, when a response told us."""
        if self.daily_used is None or self.daily_total is None:
            return None
        return self.daily_total - self.daily_used

    def observe(self, headers: Mapping[str, str] | Any) -> None:
        """Learn from a response's headers (any mapping with case-insensitive or canonical keys)."""
        h = _lower_headers(headers)
        retry_after = parse_retry_after(h.get("retry-after"))
        if retry_after is not None:
            self.pause(retry_after)
        remaining = _int(h.get("x-hubspot-ratelimit-remaining"))
        if remaining is not None:
            interval = _int(h.get("x-hubspot-ratelimit-interval-milliseconds")) or 10_000
            self._limit(remaining, interval / 1000)
        remaining = _int(h.get("x-ratelimit-remaining"))
        if remaining is not None:
            self._limit(remaining, float(_int(h.get("x-ratelimit-reset")) or 1))
        info = h.get("sforce-limit-info")
        if info:
            match = re.search(r"(?<![-\w])api-usage=(\d+)/(\d+)", info)
            if match:
                self.daily_used, self.daily_total = int(match.group(1)), int(match.group(2))

    def _limit(self, remaining: int, window: float) -> None:
        self._refill()
        self.tokens = min(self.tokens, float(remaining))
        if remaining <= 0:
            self.pause(window)


def _lower_headers(headers: Mapping[str, str] | Any) -> dict[str, str]:
    if headers is None:
        return {}
    items: Any = headers.items() if hasattr(headers, "items") else headers
    return {str(k).lower(): str(v) for k, v in items}


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` (delta seconds or an HTTP date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# ---------------------------------------------------------------- classification


@dataclass(frozen=True)
class Failure:
    """What a failed call tells us, whatever library raised it."""

    status: int | None
    headers: dict[str, str]
    body: str
    network: bool = False


def failure_of(exc: BaseException) -> Failure | None:
    """Read status, headers and body out of httpx, requests, urllib3/HubSpot and simple-salesforce errors."""
    if isinstance(exc, httpx.HTTPStatusError):
        r = exc.response
        return Failure(r.status_code, _lower_headers(r.headers), _text(r))
    if isinstance(exc, httpx.TimeoutException | httpx.TransportError):
        return Failure(None, {}, type(exc).__name__, network=True)
    response = getattr(exc, "response", None)
    if response is not None and hasattr(response, "status_code"):  # requests.HTTPError
        return Failure(int(response.status_code), _lower_headers(response.headers), str(response.text))
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0:
        body = getattr(exc, "body", None)
        if body is None:
            body = getattr(exc, "content", None)  # simple-salesforce errors
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        elif not isinstance(body, str):
            body = json.dumps(body, default=str) if body is not None else ""
        return Failure(status, _lower_headers(getattr(exc, "headers", None)), body)
    if _is_network_error(exc):
        return Failure(None, {}, type(exc).__name__, network=True)
    return None


def _is_network_error(exc: BaseException) -> bool:
    # matched by name so that this module does not import requests/urllib3 for their exception classes
    names = {c.__name__ for c in type(exc).__mro__}
    network = {
        "ConnectionError",
        "Timeout",
        "TimeoutError",
        "ReadTimeoutError",
        "MaxRetryError",
        "ProtocolError",
        "NewConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
        "ChunkedEncodingError",
    }
    return bool(names & network) and not isinstance(exc, ConnectorError)


def _text(response: httpx.Response) -> str:
    try:
        return response.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        return ""


def vendor_message(body: str, limit: int = 300) -> str:
    """The human part of a vendor error body (message, error, errorCode), shortened; never headers or URLs."""
    text = body.strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return text[:limit]
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node[:3]:
                walk(item)
        elif isinstance(node, dict):
            for key in (
                "errorCode",
                "statusCode",
                "category",
                "error",
                "message",
                "error_description",
                "error_info",
            ):
                value = node.get(key)
                if isinstance(value, str) and value and value not in parts:
                    parts.append(value)
            if isinstance(node.get("errors"), list):
                walk(node["errors"])
            # Jira: {"errorMessages": ["..."], "errors": {"field": "message"}}
            messages = node.get("errorMessages")
            for text in messages if isinstance(messages, list) else []:
                if isinstance(text, str) and text and text not in parts:
                    parts.append(text)
            if isinstance(node.get("errors"), dict):
                for name, text in list(node["errors"].items())[:3]:
                    if isinstance(text, str) and text:
                        parts.append(f"{name}: {text}")

    walk(data)
    return ("; ".join(parts) or text)[:limit]


# what a vendor answers when the input it was sent is refused (a bad value, a conflict, a body too large): a
# batch so refused is sent again in halves; another 4xx (a wrong path, a method not allowed) is the system's
_INPUT_REFUSED = (400, 409, 413, 422)


def classify(
    exc: BaseException, *, system: str, record: str | None = None, batch: bool = False
) -> ConnectorError:
    """Turn any failure into the connector error tree.

    429, 5xx, 408, timeouts and connection errors are retriable (with the vendor's ``Retry-After``);
    Salesforce's 403 ``REQUEST_LIMIT_EXCEEDED`` is retriable after a long wait; 401 and other 403 are
    authentication errors (407 too: a proxy's); other 4xx are skippable when the call was about one record;
    400, 409, 413 and 422 to a call carrying several records' writes (``batch``) are a refused batch; the
    rest is fatal.
    """
    if isinstance(exc, ConnectorError):
        return exc
    if any(c.__name__ == "SSLError" for c in type(exc).__mro__):
        # a certificate the configured CA bundle does not trust: retrying will not help
        return FatalConnectorError("TLS verification failed (check ca_bundle)", system=system, record=record)
    failure = failure_of(exc)
    if failure is None:
        return FatalConnectorError(f"unexpected {type(exc).__name__}", system=system, record=record)
    if failure.network:
        return RetriableConnectorError(f"network error ({failure.body})", system=system, record=record)
    status = failure.status or 0
    message = vendor_message(failure.body)
    retry_after = parse_retry_after(failure.headers.get("retry-after"))
    detail = f"HTTP {status}" + (f": {message}" if message else "")
    if status == 429 or status == 408 or status >= 500:
        return RetriableConnectorError(detail, system=system, record=record, retry_after=retry_after)
    if status == 403 and any(code in failure.body for code in _LIMIT_CODES):
        wait = retry_after if retry_after is not None else DAILY_LIMIT_WAIT
        return RetriableConnectorError(detail, system=system, record=record, retry_after=wait)
    if status in (401, 403, 407):  # (407: a proxy refused its credentials)
        return ConnectorAuthError(detail, system=system, record=record)
    if 400 <= status < 500 and record is not None:
        return SkippableRecordError(detail, system=system, record=record)
    if status in _INPUT_REFUSED and batch:
        return BatchRefusedError(detail, system=system)
    return FatalConnectorError(detail, system=system, record=record)


def call_with_policy(
    fn: Callable[[], T],
    *,
    system: str,
    record: str | None = None,
    batch: bool = False,
    policy: RetryPolicy,
    bucket: TokenBucket | None = None,
) -> T:
    """Run ``fn`` under the policy: pace it with ``bucket``, classify its failure, retry the retriable ones.

    An ``httpx.Response`` with an error status counts as a failure. Retriable errors are retried up to
    ``policy.max_attempts`` attempts in all, waiting ``Retry-After`` when given (the bucket is paused for as
    long) or an exponential backoff with jitter; the last error is raised, classified (``record`` and
    ``batch`` as :func:`classify` takes them).
    """
    attempt = 0
    while True:
        attempt += 1
        if bucket is not None:
            bucket.acquire()
        try:
            result = fn()
            if isinstance(result, httpx.Response) and result.is_error:
                result.read()
                raise httpx.HTTPStatusError(
                    f"HTTP {result.status_code}", request=result.request, response=result
                )
            return result
        except Exception as exc:
            error = classify(exc, system=system, record=record, batch=batch)
            failure = failure_of(exc)
            if bucket is not None and failure is not None and failure.headers:
                bucket.observe(failure.headers)
            if not isinstance(error, RetriableConnectorError) or attempt >= policy.max_attempts:
                raise error from exc
            retry_after = error.retry_after
            if retry_after is None and bucket is not None and bucket.paused_until > bucket.clock():
                # a response hook saw Retry-After that the library's exception does not carry
                retry_after = bucket.paused_until - bucket.clock()
            if retry_after is not None and retry_after > policy.max_wait:
                raise error from exc
            wait = policy.delay(attempt, retry_after)
            log.info("%s: attempt %d failed (%s); retrying in %.2fs", system, attempt, error, wait)
            if bucket is not None and retry_after is not None:
                # the bucket would wait again for the same pause: the policy's sleep covers it
                bucket.paused_until = 0.0
            policy.sleep(wait)


def chunks(items: list[T], size: int) -> list[list[T]]:
    """``items`` in consecutive lists of at most ``size``."""
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]


def min_calls(n: int, batch_max: int) -> int:
    """The fewest write calls that can carry ``n`` writes: ``ceil(n / batch_max)``."""
    return math.ceil(n / max(1, batch_max))


def policy_from(
    settings: ConnectorSettings, extra: Mapping[str, Any], rate: float, burst: int
) -> tuple[RetryPolicy, TokenBucket]:
    """The retry policy and token bucket of one connector, from its settings and its context's ``extra``.

    ``extra`` may carry ``sleep`` (a callable taking seconds), ``monotonic`` (a clock in seconds) and
    ``rand`` (a 0..1 random source): tests inject them so that nothing really sleeps.
    """
    sleep: Sleep = extra.get("sleep", time.sleep)
    monotonic: Monotonic = extra.get("monotonic", time.monotonic)
    rand: Callable[[], float] = extra.get("rand", random.random)
    if isinstance(settings, PolicySettings):
        policy = RetryPolicy(
            settings.max_attempts, settings.backoff_base, settings.backoff_cap, sleep, settings.max_wait, rand
        )
    else:
        policy = RetryPolicy(sleep=sleep, rand=rand)
    return policy, TokenBucket(rate, burst, monotonic, sleep)


__all__ = [
    "USER_AGENT",
    "Failure",
    "PolicySettings",
    "RetryPolicy",
    "TokenBucket",
    "build_client",
    "call_with_policy",
    "chunks",
    "classify",
    "failure_of",
    "min_calls",
    "parse_retry_after",
    "policy_from",
    "vendor_message",
]
