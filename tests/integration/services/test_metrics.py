"""Prometheus metrics and readiness: queue gauges from the web app, send counters per scheduler."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from nurture.engine.ports import OutgoingMessage
from nurture.services.metrics import MeteredTransport, SchedulerMetrics
from nurture.setting_values import parse_smtp_url
from nurture.smtp.transports import SmtpTransport
from tests.support.clock import T0
from tests.support.web import Web, build_web


@pytest.fixture
def web(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[Web]:
    harness = build_web(database_url, engine, tmp_path)
    yield harness
    harness.close()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_show_the_queue(web: Web) -> None:
    web.signup()
    web.clock.now = T0.replace(hour=11)
    samples = _samples(web.browser().get("/metrics").text)
    assert samples[("nurture_deliveries", (("status", "queued"),))] == 1
    assert samples[("nurture_queue_due", ())] == 1
    assert samples[("nurture_oldest_due_age_seconds", ())] == 3600


def test_readyz_reports_the_content_version(web: Web) -> None:
    answer = web.browser().get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "content_version": web.content.current.version}


def test_scheduler_counters_count_outcomes_and_codes(smtp_server: Any) -> None:
    metrics = SchedulerMetrics()
    smtp_server.faults.reject_recipient("gone@example.org")
    transport = MeteredTransport(SmtpTransport(parse_smtp_url(smtp_server.url), timeout=5), metrics)
    for to in ("a@example.org", "gone@example.org"):
        transport.send(OutgoingMessage(envelope_from="hello@nurture.test", recipients=(to,),
                                       data=b"Subject: x\r\n\r\nhello\r\n"))
    transport.close()
    from prometheus_client import generate_latest

    samples = _samples(generate_latest(metrics.registry).decode())
    assert samples[("nurture_smtp_sends_total", (("outcome", "ok"),))] == 1
    assert samples[("nurture_smtp_sends_total", (("outcome", "permanent"),))] == 1
    assert samples[("nurture_smtp_errors_total", (("code", "550"),))] == 1
    assert samples[("nurture_send_seconds_count", ())] == 2


def test_relay_counters_and_breakers(smtp_server: Any) -> None:
    from prometheus_client import generate_latest

    from nurture.engine.throttle import CircuitBreaker
    from nurture.relay_settings import Strategy
    from nurture.services.metrics import metered
    from nurture.smtp.failover import FailoverTransport, Relay, as_pipelined
    from tests.support.ports import free_port

    metrics = SchedulerMetrics()
    relays = [Relay(name, as_pipelined(SmtpTransport(parse_smtp_url(url), timeout=5)),
                    CircuitBreaker(failures=1, name=name))
              for name, url in (("a", f"smtp://127.0.0.1:{free_port()}"), ("b", smtp_server.url))]
    failover = FailoverTransport(relays, Strategy.FAILOVER)
    metrics.watch_relays(failover)
    transport = metered(failover, metrics)
    for number in range(3):
        transport.send(OutgoingMessage(envelope_from="hello@nurture.test",
                                       recipients=(f"p{number}@example.org",),
                                       data=b"Subject: x\r\n\r\nhello\r\n"))
    transport.close()
    samples = _samples(generate_latest(metrics.registry).decode())
    assert samples[("nurture_relay_sends_total", (("outcome", "ok"), ("relay", "b")))] == 3
    assert samples[("nurture_relay_breaker_open", (("relay", "a"),))] == 1
    assert samples[("nurture_relay_breaker_open", (("relay", "b"),))] == 0
    assert samples[("nurture_relay_moved_away", (("relay", "a"),))] == 1


def test_a_relay_s_day_left_and_the_destinations_paced(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from prometheus_client import generate_latest

    from nurture.engine.destinations import DestinationPacer
    from nurture.engine.ports import SendErrorKind, SendResult
    from nurture.engine.relay_limits import Budget
    from nurture.engine.throttle import CircuitBreaker
    from nurture.relay_settings import Strategy
    from nurture.setting_values import RelayLimits
    from nurture.smtp.failover import FailoverTransport, Relay, as_pipelined
    from nurture.store.database import make_engine, upgrade
    from nurture.store.sql.tokens import SqlTokenStore

    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    upgrade(url)
    engine = make_engine(url)
    budget = Budget("relay:a", RelayLimits(per_day=10), SqlTokenStore(engine))
    relay = Relay("a", as_pipelined(SmtpTransport(parse_smtp_url("smtp://127.0.0.1:1"), timeout=5)),
                  CircuitBreaker(failures=1, name="a"), budget=budget)
    pacer = DestinationPacer()
    metrics = SchedulerMetrics()
    metrics.watch_relays(FailoverTransport([relay], Strategy.FAILOVER))
    metrics.watch_destinations(pacer)
    for _ in range(3):
        budget.take(datetime(2026, 12, 2, 12, tzinfo=UTC))
    gmail = pacer.group_of("ana@gmail.com")
    pacer.handed_over(gmail)
    pacer.answered(gmail, SendResult(ok=False, code=421, message="4.7.0 Try again later",
                                     error_kind=SendErrorKind.TEMPORARY), time.monotonic())
    samples = _samples(generate_latest(metrics.registry).decode())
    engine.dispose()
    assert samples[("nurture_relay_left_today", (("relay", "a"),))] == 7
    assert samples[("nurture_destination_window", (("group", "gmail"),))] == 1
    assert 0 < samples[("nurture_destination_held_seconds", (("group", "gmail"),))] <= 1
    assert samples[("nurture_destination_deferrals_total", (("group", "gmail"),))] == 1


def test_signed_feedback_webhook_suppresses_and_refuses_forgeries(
        database_url: str, engine: Engine, tmp_path: Path) -> None:
    import json
    from dataclasses import replace

    from nurture.engine.feedback_webhooks import sign_webhook
    from nurture.services.runtime import Runtime
    from nurture.store.sql.store import SqlStore
    from nurture.web.app import create_app
    from nurture.web.options import WebOptions

    secret = "feedback-secret-0123456789abcdef"
    harness = build_web(database_url, engine, tmp_path)
    settings = harness.settings.model_copy(update={"feedback_webhook_secret": secret})
    runtime = Runtime(settings=settings, engine=engine, store=SqlStore(engine),
                      content=harness.content)
    web = replace(harness, app=create_app(settings, runtime=runtime, options=WebOptions(),
                                          clock=harness.clock))
    try:
        web.signup()
        web.confirm()
        body = json.dumps({"events": [{"type": "complaint", "email": "asha.k@example.org"}]}).encode()
        client = web.browser()
        headers = {"Content-Type": "application/json"}
        assert client.post("/api/v1/feedback", content=body, headers=headers).status_code == 401
        forged = sign_webhook("not-the-secret-0123456789abcdef", body, int(T0.timestamp()))
        assert client.post("/api/v1/feedback", content=body,
                           headers={**headers, "X-Nurture-Signature": forged}).status_code == 401
        signed = sign_webhook(secret, body, int(T0.timestamp()))
        answer = client.post("/api/v1/feedback", content=body,
                             headers={**headers, "X-Nurture-Signature": signed})
        assert answer.status_code == 202, answer.text
        assert SqlStore(engine).is_suppressed("asha.k@example.org")
    finally:
        web.close()  # the copy shares the harness's browsers
