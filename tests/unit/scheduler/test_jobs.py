"""The scheduler's jobs on a fake clock, without APScheduler and without sleeping: each runs at the
clock's `now`, and a failure is logged and never escapes (the next tick tries again)."""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nurture.content.library import ContentHolder
from nurture.engine.dispatch_run import DispatchReport
from nurture.scheduler.dispatch import DispatchJob
from nurture.scheduler.housekeeping import Housekeeping
from nurture.scheduler.reap_leases import ReapLeases
from nurture.scheduler.reload_content import ReloadContent
from nurture.services.metrics import SchedulerMetrics
from nurture.services.retention import Purged
from tests.support.clock import T0
from tests.support.paths import ROOT


class FakeClock:
    """Aware UTC time that moves only when a test moves it."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> datetime:
        self.reads += 1
        return self.now


class Calls:
    """A callable that notes its keyword arguments, answers `returns`, or raises `error`."""

    def __init__(self, returns: Any = None, error: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.returns, self.error = returns, error

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append({"args": args, **kwargs})
        if self.error is not None:
            raise self.error
        return self.returns


class FakeDispatcher:
    owner = "host:42"

    def __init__(self, report: DispatchReport | None = None,
                 error: Exception | None = None) -> None:
        self.runs: list[datetime] = []
        self.report, self.error = report or DispatchReport(), error

    def run(self, now: datetime) -> DispatchReport:
        self.runs.append(now)
        if self.error is not None:
            raise self.error
        return self.report


@pytest.fixture(autouse=True)
def job_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Whatever level an earlier test left the root logger at, the jobs' records are seen."""
    caplog.set_level(logging.INFO, logger="nurture.scheduler")


def counter(metrics: SchedulerMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


# -- dispatch --------------------------------------------------------------------------------------


def dispatch_job(dispatcher: FakeDispatcher, clock: FakeClock, beat: Calls,
                 metrics: SchedulerMetrics) -> DispatchJob:
    return DispatchJob(dispatcher, beat=beat, content_version=lambda: "v7", clock=clock,
                       metrics=metrics)


def test_the_dispatch_job_runs_the_dispatcher_at_the_clock_now_and_beats(
        caplog: pytest.LogCaptureFixture) -> None:
    clock, beat, metrics = FakeClock(), Calls(), SchedulerMetrics()
    dispatcher = FakeDispatcher(DispatchReport(claimed=3, sent=2, skipped=1))
    job = dispatch_job(dispatcher, clock, beat, metrics)
    clock.now = T0 + timedelta(seconds=5)
    job.run()
    clock.now = T0 + timedelta(seconds=10)
    job.run()

    assert dispatcher.runs == [T0 + timedelta(seconds=5), T0 + timedelta(seconds=10)]
    assert beat.calls[0] == {"args": ("host:42",), "now": T0 + timedelta(seconds=5), "sent": 2,
                             "content_version": "v7", "started_at": T0, "sending_state": None}
    assert [call["now"] for call in beat.calls] == dispatcher.runs
    assert job.ticks == 2
    assert counter(metrics, "nurture_scheduler_ticks_total") == 2
    ticks = [r for r in caplog.records if r.getMessage() == "tick"]
    assert [(r.claimed, r.sent) for r in ticks] == [(3, 2)] * 2  # type: ignore[attr-defined]


def test_a_quiet_tick_beats_without_logging(caplog: pytest.LogCaptureFixture) -> None:
    beat = Calls()
    job = dispatch_job(FakeDispatcher(), FakeClock(), beat, SchedulerMetrics())
    job.run()
    assert len(beat.calls) == 1 and beat.calls[0]["sent"] == 0
    assert not [r for r in caplog.records if r.getMessage() == "tick"]


@pytest.mark.parametrize("failing", ["dispatcher", "heartbeat"])
def test_a_failed_tick_is_logged_and_the_next_one_runs(failing: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    lost = ConnectionError("server closed the connection unexpectedly")
    dispatcher = FakeDispatcher(error=lost if failing == "dispatcher" else None)
    beat = Calls(error=lost if failing == "heartbeat" else None)
    clock = FakeClock()
    job = dispatch_job(dispatcher, clock, beat, SchedulerMetrics())
    job.run()  # does not raise
    clock.now += timedelta(seconds=5)
    job.run()
    assert dispatcher.runs == [T0, T0 + timedelta(seconds=5)]
    failures = [r for r in caplog.records
                if r.getMessage() == "dispatch tick failed; retrying on the next tick"]
    assert len(failures) == 2 and all(r.exc_info for r in failures)


# -- reaping leases --------------------------------------------------------------------------------


class ExpiringStore:
    def __init__(self, returned: int = 0, error: Exception | None = None) -> None:
        self.reaped_at: list[datetime] = []
        self.returned, self.error = returned, error

    def reap_expired(self, now: datetime) -> int:
        self.reaped_at.append(now)
        if self.error is not None:
            raise self.error
        return self.returned


def test_reaping_returns_expired_leases_at_the_clock_now(caplog: pytest.LogCaptureFixture) -> None:
    store, clock, metrics = ExpiringStore(returned=3), FakeClock(), SchedulerMetrics()
    job = ReapLeases(store, clock=clock, metrics=metrics)
    clock.now = T0 + timedelta(minutes=3)
    assert job.run() == 3
    assert store.reaped_at == [T0 + timedelta(minutes=3)]
    assert counter(metrics, "nurture_lease_expiries_total") == 3
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (warning.getMessage(), warning.count) == (  # type: ignore[attr-defined]
        "expired leases returned to the queue", 3)


def test_reaping_nothing_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    metrics = SchedulerMetrics()
    assert ReapLeases(ExpiringStore(), clock=FakeClock(), metrics=metrics).run() == 0
    assert counter(metrics, "nurture_lease_expiries_total") == 0
    assert not caplog.records


def test_a_failed_reap_is_logged_and_does_not_escape(caplog: pytest.LogCaptureFixture) -> None:
    job = ReapLeases(ExpiringStore(error=ConnectionError("gone")), clock=FakeClock(),
                     metrics=SchedulerMetrics())
    assert job.run() == 0
    assert [r.getMessage() for r in caplog.records] == ["reaping expired leases failed"]


# -- housekeeping ----------------------------------------------------------------------------------


def test_housekeeping_purges_as_of_the_clock(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0 + timedelta(days=40))
    purge = Calls(returns=Purged(departed=2, unconfirmed=1, cutoff=T0 + timedelta(days=10)))
    job = Housekeeping(purge=purge, clock=clock)
    job.run()
    assert purge.calls == [{"args": (), "now": T0 + timedelta(days=40)}]
    (purged,) = caplog.records
    assert (purged.getMessage(), purged.departed, purged.unconfirmed) == (  # type: ignore[attr-defined]
        "retention purge", 2, 1)


def test_housekeeping_with_nothing_to_purge_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    job = Housekeeping(purge=Calls(returns=Purged(departed=0, unconfirmed=0, cutoff=T0)),
                       clock=FakeClock())
    job.run()
    assert not caplog.records


def test_a_failed_housekeeping_is_logged_and_does_not_escape(
        caplog: pytest.LogCaptureFixture) -> None:
    job = Housekeeping(purge=Calls(error=ConnectionError("gone")), clock=FakeClock())
    job.run()
    assert [r.getMessage() for r in caplog.records] == ["housekeeping failed; it runs again later"]


# -- content reload --------------------------------------------------------------------------------


@pytest.fixture
def holder(tmp_path: Path) -> ContentHolder:
    sequences = tmp_path / "sequences"
    sequences.mkdir()
    for name in ("sample.yaml", "system.yaml"):
        shutil.copy(ROOT / "sequences" / name, sequences / name)
    return ContentHolder(sequences, ROOT / "templates", rules=True)


def _retitle(holder: ContentHolder, subject: str) -> None:
    path = holder.sequences_dir / "sample.yaml"
    text = path.read_text()
    first = text.index("subject:")
    path.write_text(text[:first] + f"subject: {subject}" + text[text.index("\n", first):])


def test_reload_records_a_new_version_only_when_one_took_over(holder: ContentHolder) -> None:
    record, clock = Calls(), FakeClock()
    job = ReloadContent(holder, record=record, clock=clock)
    assert job.run() is False, "nothing changed"
    assert record.calls == []

    _retitle(holder, "A new subject")
    clock.now = T0 + timedelta(seconds=10)
    assert job.run() is True
    assert record.calls == [{"args": (holder.current.version, holder.current.files,
                                      T0 + timedelta(seconds=10))}]
    assert job.run() is False, "the same version again"

    good = holder.current.version
    (holder.sequences_dir / "sample.yaml").write_text("key: sample\nsteps: [oops\n")
    assert job.run() is False, "a refused edit does not take over"
    assert holder.current.version == good
    assert len(record.calls) == 1


def test_a_failed_version_record_is_logged_and_does_not_escape(
        holder: ContentHolder, caplog: pytest.LogCaptureFixture) -> None:
    job = ReloadContent(holder, record=Calls(error=ConnectionError("gone")), clock=FakeClock())
    _retitle(holder, "Another subject")
    assert job.run() is True, "the new version took over all the same"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "could not record the content version"]
