"""The shared HTTP policy: client settings, retry policy, token bucket and error classification."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from bridge.errors import (
    ConnectorAuthError,
    ConnectorError,
    FatalConnectorError,
    RetriableConnectorError,
    SkippableRecordError,
)
from bridge.http import (
    USER_AGENT,
    RetryPolicy,
    TokenBucket,
    build_client,
    call_with_policy,
    classify,
    env_proxy,
    min_calls,
    parse_retry_after,
)
from bridge.settings import ConnectorSettings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def response(status: int, headers: dict[str, str] | None = None, body: Any = None) -> httpx.Response:
    return httpx.Response(
        status,
        headers=headers,
        json=body if body is not None else {"message": "x"},
        request=httpx.Request("GET", "https://vendor.example/v1/things?api_token=SECRET"),
    )


@pytest.mark.parametrize(
    ("status", "body", "record", "expected"),
    [
        (429, {"message": "slow down"}, None, RetriableConnectorError),
        (500, {"message": "boom"}, None, RetriableConnectorError),
        (503, {"message": "busy"}, "r1", RetriableConnectorError),
        (408, {}, None, RetriableConnectorError),
        (401, [{"errorCode": "INVALID_SESSION_ID"}], None, ConnectorAuthError),
        (403, {"message": "missing scopes"}, None, ConnectorAuthError),
        (403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED"}], None, RetriableConnectorError),
        (400, {"message": "bad value"}, "r1", SkippableRecordError),
        (404, {"message": "gone"}, "r1", SkippableRecordError),
        (400, {"message": "bad query"}, None, FatalConnectorError),
    ],
)
def test_classify_status(status: int, body: Any, record: str | None, expected: type[ConnectorError]) -> None:
    exc = httpx.HTTPStatusError("x", request=response(status).request, response=response(status, body=body))

    error = classify(exc, system="crm", record=record)

    assert type(error) is expected and error.system == "crm" and error.record == record
    assert "SECRET" not in str(error) and f"HTTP {status}" in str(error)


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")])
def test_network_errors_are_retriable(exc: Exception) -> None:
    assert isinstance(classify(exc, system="crm"), RetriableConnectorError)


def test_unknown_errors_are_fatal_and_connector_errors_pass_through() -> None:
    assert isinstance(classify(KeyError("x"), system="crm"), FatalConnectorError)
    own = SkippableRecordError("no", system="crm", record="r")
    assert classify(own, system="crm") is own


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3.0), ("0.5", 0.5), (None, None), ("soon", None), ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0)],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    from datetime import UTC, datetime

    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(value, now) == seconds


def run_sequence(
    answers: list[httpx.Response | Exception], policy: RetryPolicy, bucket: TokenBucket | None = None
) -> tuple[Callable[[], httpx.Response], list[int]]:
    calls: list[int] = []

    def fn() -> httpx.Response:
        calls.append(1)
        answer = answers[len(calls) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return fn, calls


def test_retries_honour_retry_after_then_back_off_exponentially_with_jitter() -> None:
    clock = Clock()
    policy = RetryPolicy(max_attempts=4, base=1.0, cap=30.0, sleep=clock.sleep, rand=lambda: 0.5)
    fn, calls = run_sequence(
        [response(429, {"Retry-After": "4"}), response(502), response(503), response(200)], policy
    )

    result = call_with_policy(fn, system="crm", policy=policy)

    assert result.status_code == 200 and len(calls) == 4
    assert clock.sleeps == [4.0, 1.0, 2.0]  # Retry-After, then half of 2**1 and 2**2 (jitter 0.5)


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock = Clock()
    policy = RetryPolicy(max_attempts=2, base=1.0, sleep=clock.sleep, rand=lambda: 1.0)
    fn, calls = run_sequence([response(500), response(500)], policy)

    with pytest.raises(RetriableConnectorError):
        call_with_policy(fn, system="crm", policy=policy)
    assert len(calls) == 2 and clock.sleeps == [1.0]


@pytest.mark.parametrize("status", [400, 401])
def test_non_retriable_errors_are_not_retried(status: int) -> None:
    clock = Clock()
    policy = RetryPolicy(sleep=clock.sleep)
    fn, calls = run_sequence([response(status), response(200)], policy)

    with pytest.raises((FatalConnectorError, ConnectorAuthError)):
        call_with_policy(fn, system="crm", policy=policy)
    assert len(calls) == 1 and clock.sleeps == []


def test_a_retry_after_beyond_max_wait_is_left_to_the_core() -> None:
    clock = Clock()
    policy = RetryPolicy(sleep=clock.sleep, max_wait=60)
    fn, calls = run_sequence([response(429, {"Retry-After": "3600"}), response(200)], policy)

    with pytest.raises(RetriableConnectorError) as info:
        call_with_policy(fn, system="crm", policy=policy)
    assert info.value.retry_after == 3600 and len(calls) == 1 and clock.sleeps == []


def test_bucket_paces_at_its_rate_after_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=2, clock=clock, sleep=clock.sleep)

    for _ in range(4):
        bucket.acquire()

    assert clock.sleeps == [0.5, 0.5]


@pytest.mark.parametrize(
    ("headers", "pause"),
    [
        ({"X-HubSpot-RateLimit-Remaining": "0", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}, 10.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "5"}, 5.0),
        ({"Retry-After": "7"}, 7.0),
    ],
)
def test_bucket_pauses_on_vendor_headers(headers: dict[str, str], pause: float) -> None:
    clock = Clock()
    bucket = TokenBucket(rate=100.0, burst=10, clock=clock, sleep=clock.sleep)

    bucket.observe(httpx.Headers(headers))
    bucket.acquire()

    assert clock.sleeps[0] == pause


def test_bucket_reads_the_salesforce_daily_budget() -> None:
    bucket = TokenBucket(clock=Clock())

    bucket.observe({"Sforce-Limit-Info": "api-usage=25/5000; per-app-api-usage=17/250(appName=bridge)"})

    assert (bucket.daily_used, bucket.daily_total, bucket.daily_remaining) == (25, 5000, 4975)


def test_build_client_sets_base_url_user_agent_timeout_and_logs_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = ConnectorSettings(plugin="x", base_url="https://vendor.example", timeout=12.5)
    with respx.mock(base_url="https://vendor.example") as router:
        route = router.get("/v1/things").respond(
            200, json={}, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3"}
        )
        clock = Clock()
        bucket = TokenBucket(clock=clock, sleep=clock.sleep)
        with (
            caplog.at_level(logging.DEBUG, logger="bridge.http"),
            build_client(settings, system="crm", bucket=bucket, headers={"x-api-token": "SECRET"}) as client,
        ):
            client.get("/v1/things", params={"api_token": "SECRET"})

    request = route.calls[0].request
    assert request.headers["User-Agent"] == USER_AGENT and request.headers["x-api-token"] == "SECRET"
    assert client.timeout.read == 12.5
    assert "GET /v1/things -> 200" in caplog.text and "SECRET" not in caplog.text
    assert bucket.paused_until == 3.0


def test_build_client_uses_the_ca_bundle(tmp_path: Any) -> None:
    import trustme

    ca = trustme.CA()
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    settings = ConnectorSettings(plugin="x", base_url="https://vendor.example", ca_bundle=str(path))

    client = build_client(settings, system="crm")

    context = client._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert context.cert_store_stats()["x509_ca"] == 1  # only the configured CA, not the system bundle
    client.close()


def test_the_ca_bundle_wins_over_ssl_cert_file_and_proxies_still_come_from_the_environment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, httpserver: Any
) -> None:
    import trustme

    ca = trustme.CA()
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    # a TLS-inspecting proxy is why one sets a CA bundle: it is reached through the environment's proxy
    monkeypatch.setenv("HTTP_PROXY", httpserver.url_for("").rstrip("/"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    httpserver.expect_request("/v1/things").respond_with_json({"ok": True})
    settings = ConnectorSettings(plugin="x", base_url="http://vendor.invalid", ca_bundle=str(path))

    with build_client(settings, system="crm") as client:
        answer = client.get("/v1/things")
        context = client._transport._pool._ssl_context  # type: ignore[attr-defined]

    assert answer.json() == {"ok": True}  # vendor.invalid resolves nowhere: the proxy took it
    assert httpserver.log[0][0].headers["Host"] == "vendor.invalid"
    assert context.cert_store_stats()["x509_ca"] == 1


def test_env_proxy_names_the_proxy_for_a_url_and_honours_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    monkeypatch.delenv("no_proxy", raising=False)

    assert env_proxy("https://api.hubapi.com") == "http://proxy.corp:3128"
    assert env_proxy("https://crm.internal.example/x") is None
    assert env_proxy("http://api.hubapi.com") is None  # no HTTP_PROXY


def test_min_calls() -> None:
    assert [min_calls(n, 100) for n in (0, 1, 100, 101, 1000)] == [0, 1, 1, 2, 10]
