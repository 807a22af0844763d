"""Chooses the SMTP transport for the settings: in this process, or in a child process for
batches; over several relays with failover when a relays file names them."""

from __future__ import annotations

from nurture.config import Settings
from nurture.engine.ports import Transport
from nurture.engine.throttle import CircuitBreaker
from nurture.setting_values import SmtpEndpoint
from nurture.smtp.failover import FailoverTransport, Relay, as_pipelined
from nurture.smtp.relay_process import ProcessTransport
from nurture.smtp.transports import SmtpTransport


def transport_from_settings(settings: Settings, *, separate_process: bool = False) -> Transport:
    """The transport for `NURTURE_SMTP_URL` (or the relays of `NURTURE_RELAYS_FILE`) with
    `NURTURE_SMTP_TIMEOUT_SECONDS`; with `separate_process`, each SMTP conversation runs in a
    child process, pipelined (for sending batches: see nurture.smtp.relay_process)."""
    def one(endpoint: SmtpEndpoint) -> Transport:
        if separate_process:
            return ProcessTransport(endpoint, timeout=settings.smtp_timeout_seconds)
        return SmtpTransport(endpoint, timeout=settings.smtp_timeout_seconds)

    if settings.relays_file is None:
        return one(settings.smtp)
    plan = settings.relays
    # One failure opens a relay's breaker: its messages move on at once rather than each
    # waiting for a connection that is not there; after the cooldown one trial probes it.
    return FailoverTransport([
        Relay(relay.name, as_pipelined(one(relay.endpoint)),
              CircuitBreaker(failures=1, cooldown=settings.breaker_cooldown_seconds,
                             max_cooldown=settings.breaker_max_cooldown_seconds, name=relay.name),
              weight=relay.weight)
        for relay in plan.relays], plan.strategy)
