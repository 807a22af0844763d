"""Chooses the SMTP transport for the settings: in this process, or in child processes for
batches; a pool of connections per relay; several relays with failover, each with its limits
kept in the deployment's token store, when a relays file names them."""

from __future__ import annotations

from nurture.config import Settings
from nurture.engine.ports import PipelinedTransport, Transport
from nurture.engine.relay_limits import Budget, relay_key
from nurture.engine.shared_rate import TokenStore
from nurture.engine.throttle import CircuitBreaker
from nurture.relay_settings import RelaySetting
from nurture.smtp.failover import FailoverTransport, Relay, as_pipelined
from nurture.smtp.pool import ConnectionPool
from nurture.smtp.relay_process import ProcessTransport
from nurture.smtp.transports import SmtpTransport


def transport_from_settings(settings: Settings, *, separate_process: bool = False,
                            tokens: TokenStore | None = None) -> Transport:
    """The transport for `NURTURE_SMTP_URL` (or the relays of `NURTURE_RELAYS_FILE`) with
    `NURTURE_SMTP_TIMEOUT_SECONDS`; with `separate_process`, each SMTP conversation runs in a
    child process, pipelined (for sending batches: see nurture.smtp.relay_process), and a relay
    with several connections gets a child for each. Relay limits hold where `tokens` is given
    (the scheduler's); a test send or a preview is not counted."""
    def one(relay: RelaySetting) -> Transport:
        if not separate_process:
            # One conversation at a time here: a pool would only queue behind the same thread.
            return SmtpTransport(relay.endpoint, timeout=settings.smtp_timeout_seconds)
        children: list[PipelinedTransport] = [
            ProcessTransport(relay.endpoint, timeout=settings.smtp_timeout_seconds)
            for _ in range(relay.connections)]
        return children[0] if len(children) == 1 else ConnectionPool(children)

    plan = settings.relays
    if settings.relays_file is None:
        return one(plan.relays[0])
    # One failure opens a relay's breaker: its messages move on at once rather than each
    # waiting for a connection that is not there; after the cooldown one trial probes it.
    return FailoverTransport([
        Relay(relay.name, as_pipelined(one(relay)),
              CircuitBreaker(failures=1, cooldown=settings.breaker_cooldown_seconds,
                             max_cooldown=settings.breaker_max_cooldown_seconds, name=relay.name),
              weight=relay.weight,
              budget=(Budget(relay_key(relay.name), relay.limits, tokens)
                      if tokens is not None and relay.limits.any else None))
        for relay in plan.relays], plan.strategy)
