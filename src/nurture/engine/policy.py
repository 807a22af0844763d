"""The dispatcher's tuning: batch size, leases, retries and backoff, re-checks and send-ahead."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class DispatchPolicy:
    batch_size: int = 200
    lease: timedelta = timedelta(minutes=5)
    retry_base: timedelta = timedelta(minutes=1)
    retry_max: timedelta = timedelta(hours=6)
    max_attempts: int = 8
    paused_recheck: timedelta = timedelta(days=1)
    recheck_interval: timedelta = timedelta(seconds=1)
    """How often, within a batch, the outcomes so far are recorded and the consent and leases of
    the rest re-read and renewed; 0 does it before every send (one more transaction each)."""
    send_ahead: timedelta = timedelta(milliseconds=100)
    """How much of the relay's time the messages handed over ahead of its replies may hold, at
    the relay's recent pace (at most the re-check interval): enough to keep it busy while a
    claim or a record runs, little enough that a stop waits no longer."""
    store_retry: timedelta = timedelta(seconds=30)
    """How long to keep retrying the write of a batch's outcomes (capped at half the lease)."""
