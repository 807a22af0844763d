"""Prometheus metrics: queue gauges from the database, send counters kept by each scheduler."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from nurture.engine.destinations import DestinationPacer
from nurture.engine.ports import Answer, OutgoingMessage, PipelinedTransport, SendResult, Transport
from nurture.engine.throttle import BreakerState
from nurture.smtp.failover import FailoverTransport, Relay
from nurture.store.operations import queue_health

SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class SchedulerMetrics:
    """Counters of one scheduler process, served on its own port (NURTURE_METRICS_PORT)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.sends = Counter("nurture_smtp_sends", "SMTP sends by outcome",
                             ["outcome"], registry=self.registry)
        self.errors = Counter("nurture_smtp_errors", "SMTP errors by reply code",
                              ["code"], registry=self.registry)
        self.latency = Histogram("nurture_send_seconds", "Time to hand one email to the relay",
                                 buckets=SEND_BUCKETS, registry=self.registry)
        self.lease_expiries = Counter("nurture_lease_expiries",
                                      "Claims returned to the queue after their lease expired",
                                      registry=self.registry)
        self.ticks = Counter("nurture_scheduler_ticks", "Dispatch ticks run", registry=self.registry)
        self.relay_sends = Counter("nurture_relay_sends", "SMTP answers by relay and outcome",
                                   ["relay", "outcome"], registry=self.registry)
        self.relay_breaker = Gauge("nurture_relay_breaker_open",
                                   "1 while a relay's breaker is open or half-open, else 0",
                                   ["relay"], registry=self.registry)
        self.relay_moved = Gauge("nurture_relay_moved_away",
                                 "Messages a relay could not take, moved to another relay",
                                 ["relay"], registry=self.registry)

        self.relay_left_today = Gauge("nurture_relay_left_today",
                                      "What a relay's daily cap leaves for today, as this process "
                                      "last saw it", ["relay"], registry=self.registry)

    def watch_relays(self, transport: FailoverTransport) -> None:
        """Each relay's breaker, moves and daily budget, read when the metrics are scraped."""
        for relay in transport.relays:
            self.relay_breaker.labels(relay=relay.name).set_function(_breaker_open(relay))
            self.relay_moved.labels(relay=relay.name).set_function(_moved(relay))
            if relay.budget is not None and relay.budget.limits.capped:
                self.relay_left_today.labels(relay=relay.name).set_function(_left_today(relay))

    def watch_destinations(self, pacer: DestinationPacer) -> None:
        """The pacing of each destination group sent to, read when the metrics are scraped."""
        self.registry.register(_PacingCollector(pacer))


def _breaker_open(relay: Relay) -> Callable[[], float]:
    return lambda: float(relay.breaker.state is not BreakerState.CLOSED)


def _moved(relay: Relay) -> Callable[[], float]:
    return lambda: float(relay.failed_over)


def _left_today(relay: Relay) -> Callable[[], float]:
    def left() -> float:
        value = relay.budget.left_today if relay.budget is not None else None
        return float("nan") if value is None else float(value)
    return left


class _PacingCollector(Collector):
    def __init__(self, pacer: DestinationPacer) -> None:
        self._pacer = pacer

    def collect(self) -> Iterator[Metric]:
        window = GaugeMetricFamily("nurture_destination_window",
                                   "Messages a destination group may have with the relay at once "
                                   "(falls to 1 when it defers us)", labels=["group"])
        held = GaugeMetricFamily("nurture_destination_held_seconds",
                                 "Seconds a destination group stays held after deferring us",
                                 labels=["group"])
        deferrals = CounterMetricFamily("nurture_destination_deferrals",
                                        "4.7.x deferrals heard from a destination group",
                                        labels=["group"])
        for view in self._pacer.view(time.monotonic()):
            window.add_metric([view.group], view.window)
            held.add_metric([view.group], view.held_for)
            deferrals.add_metric([view.group], view.deferrals)
        yield from (window, held, deferrals)


class MeteredTransport:
    """Wraps a transport to time each send and count outcomes and reply codes."""

    def __init__(self, inner: Transport, metrics: SchedulerMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def send(self, message: OutgoingMessage) -> SendResult:
        started = time.perf_counter()
        result = self.inner.send(message)
        self._observe(result, started)
        return result

    def _observe(self, result: SendResult, started: float, ended: float | None = None) -> None:
        self.metrics.latency.observe((time.perf_counter() if ended is None else ended) - started)
        outcome = "ok" if result.ok else (result.error_kind.value if result.error_kind else "error")
        self.metrics.sends.labels(outcome=outcome).inc()
        if result.relay is not None:
            self.metrics.relay_sends.labels(relay=result.relay, outcome=outcome).inc()
        if not result.ok:
            self.metrics.errors.labels(code=str(result.code or "none")).inc()

    def close(self) -> None:
        self.inner.close()


class MeteredPipelinedTransport(MeteredTransport):
    """The same for a pipelined transport; a send's time runs from when the relay could take it
    up (its hand-over, or the reply to the message before, whichever came later) to its reply,
    so that waiting behind other messages is not counted as the relay's time."""

    def __init__(self, inner: PipelinedTransport, metrics: SchedulerMetrics) -> None:
        super().__init__(inner, metrics)
        self.pipelined = inner
        self._started: deque[float] = deque()
        self._last_reply = 0.0

    def begin(self, message: OutgoingMessage) -> None:
        self._started.append(time.perf_counter())
        self.pipelined.begin(message)

    def finish(self) -> Answer | None:
        answer = self.pipelined.finish()
        started = self._started.popleft()
        if answer is not None:
            replied = time.perf_counter() - answer.age
            self._observe(answer.result, max(started, self._last_reply), replied)
            self._last_reply = replied
        return answer

    def reset(self) -> None:
        self._started.clear()
        self.pipelined.reset()


def metered(inner: Transport, metrics: SchedulerMetrics) -> MeteredTransport:
    """`inner` with its sends counted, pipelined if it is."""
    if isinstance(inner, PipelinedTransport):
        return MeteredPipelinedTransport(inner, metrics)
    return MeteredTransport(inner, metrics)


def queue_metrics(engine: Engine, now: datetime) -> bytes:
    """The database's view, the same from every web process: deliveries by status and queue age."""
    registry = CollectorRegistry()
    by_status = Gauge("nurture_deliveries", "Delivery rows by status", ["status"],
                      registry=registry)
    depth = Gauge("nurture_queue_due", "Deliveries due now and not yet sent", registry=registry)
    waiting = Gauge("nurture_queue_waiting", "Deliveries queued or deferred, due or not",
                    registry=registry)
    oldest = Gauge("nurture_oldest_due_age_seconds",
                   "Age of the oldest due delivery (0 when none is due)", registry=registry)
    health = queue_health(engine, now)
    for status in ("queued", "sending", "sent", "deferred", "failed", "bounced", "skipped"):
        by_status.labels(status=status).set(health.by_status.get(status, 0))
    depth.set(health.due)
    waiting.set(health.waiting)
    oldest.set(max(0.0, (now - health.oldest_due_at).total_seconds()) if health.oldest_due_at else 0)
    return generate_latest(registry)
