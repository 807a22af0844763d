"""Several relays behind one pipelined transport: each message goes to a healthy relay (the first,
or by weight), each relay has its own circuit breaker, and a message a relay could not take (a
lost connection, a 421) moves to the next healthy relay at once, in the order it was handed over.

A refusal of the recipient (5xx) is an answer about the address and is never tried elsewhere; any
other 4xx is left to the dispatcher's retries. A relay whose breaker opened gets one trial message
after its cooldown, and is used again once that trial goes through."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from nurture.engine.ports import (
    Answer,
    OutgoingMessage,
    PipelinedTransport,
    SendErrorKind,
    SendResult,
    Transport,
)
from nurture.engine.throttle import BreakerState, CircuitBreaker
from nurture.relay_settings import Strategy

log = logging.getLogger(__name__)

CLOSING: Final = 421
"""The relay is closing the session: nothing was decided about the message."""
_PENDING: Final = object()


def relay_trouble(result: SendResult) -> bool:
    """The relay, not the message, failed: the message may go to another relay."""
    return result.error_kind is SendErrorKind.CONNECTION or result.code == CLOSING


@dataclass(eq=False)
class Relay:
    """One relay: its name, its transport (pipelined), its weight and its breaker."""

    name: str
    transport: PipelinedTransport
    breaker: CircuitBreaker
    weight: float = 1.0
    pending: deque[_Ticket] = field(default_factory=deque)
    """Messages begun on this relay whose answer is not read yet, in order."""
    needs_reset: bool = False
    """It lost a connection: the next message begun on it starts a new session."""
    credit: float = 0.0
    """For weighted shares (smooth weighted round robin)."""
    sent: int = 0
    failed_over: int = 0


@dataclass(eq=False)
class _Ticket:
    message: OutgoingMessage
    relay: Relay | None
    tried: set[str] = field(default_factory=set)
    answer: object = _PENDING


class FailoverTransport:
    """A `PipelinedTransport` over named relays, with `strategy` between them."""

    def __init__(self, relays: Sequence[Relay], strategy: Strategy) -> None:
        if not relays:
            raise ValueError("at least one relay is needed")
        self.relays = list(relays)
        self.strategy = strategy
        self._order: deque[_Ticket] = deque()

    @property
    def where(self) -> str:
        return ", ".join(relay.name for relay in self.relays)

    def send(self, message: OutgoingMessage) -> SendResult:
        if self._order:
            raise RuntimeError("send() while messages begun are not finished")
        self.begin(message)
        answer = self.finish()
        assert answer is not None, "a failover ticket always has an answer"
        return answer.result

    def begin(self, message: OutgoingMessage) -> None:
        ticket = _Ticket(message, None)
        self._order.append(ticket)
        self._hand_to(ticket, self._pick(ticket.tried))

    def finish(self) -> Answer | None:
        """The answer for the earliest message begun, after whatever moves between relays it
        took; a CONNECTION result only when no healthy relay took it."""
        if not self._order:
            raise RuntimeError("finish() without a message begun")
        ticket = self._order.popleft()
        while True:
            relay = ticket.relay
            if relay is None:
                return Answer(_nowhere(ticket), 0.0)
            answer = self._read(ticket, relay)
            if answer is not None and not relay_trouble(answer.result):
                relay.breaker.record_success()
                relay.sent += answer.result.ok
                return Answer(replace(answer.result, relay=relay.name), answer.age)
            self._down(relay, answer)
            following = self._pick(ticket.tried)
            if following is None:
                result = answer.result if answer is not None else _nowhere(ticket)
                return Answer(replace(result, relay=relay.name),
                              answer.age if answer is not None else 0.0)
            relay.failed_over += 1
            log.warning("message moved to another relay",
                        extra={"from_relay": relay.name, "to_relay": following.name})
            self._hand_to(ticket, following)

    def reset(self) -> None:
        for relay in self.relays:
            if not relay.pending:
                relay.transport.reset()
                relay.needs_reset = False

    def close(self) -> None:
        self._order.clear()
        for relay in self.relays:
            relay.pending.clear()
            relay.transport.close()

    def _hand_to(self, ticket: _Ticket, relay: Relay | None) -> None:
        ticket.relay, ticket.answer = relay, _PENDING
        if relay is None:
            return
        ticket.tried.add(relay.name)
        if relay.needs_reset and not relay.pending:
            relay.transport.reset()
            relay.needs_reset = False
        relay.transport.begin(ticket.message)
        relay.pending.append(ticket)

    @staticmethod
    def _read(ticket: _Ticket, relay: Relay) -> Answer | None:
        """The relay's answer for `ticket`, reading (and keeping) those of the messages begun on
        it before: answers come back in the order the relay was given the messages."""
        while ticket.answer is _PENDING:
            relay.pending.popleft().answer = relay.transport.finish()
        answer = ticket.answer
        assert answer is None or isinstance(answer, Answer)
        return answer

    def _down(self, relay: Relay, answer: Answer | None) -> None:
        if answer is None:
            return  # not attempted behind a failure this relay already reported
        relay.needs_reset = True
        if relay.breaker.state is not BreakerState.OPEN:
            relay.breaker.record_failure()

    def _pick(self, tried: set[str]) -> Relay | None:
        """The relay for the next message: the first healthy one (failover), or by weight among
        the healthy ones; a relay past its cooldown gets its one trial message."""
        healthy = [relay for relay in self.relays if relay.name not in tried
                   and relay.breaker.ready()]
        if not healthy:
            return None
        if self.strategy is Strategy.WEIGHTED:
            total = sum(relay.weight for relay in healthy)
            for relay in healthy:
                relay.credit += relay.weight
            chosen = max(healthy, key=lambda relay: relay.credit)
            chosen.credit -= total
            healthy = [chosen, *[relay for relay in healthy if relay is not chosen]]
        for relay in healthy:
            if relay.breaker.allow():
                return relay
        return None


def _nowhere(ticket: _Ticket) -> SendResult:
    tried = ", ".join(sorted(ticket.tried)) or "none"
    return SendResult(ok=False, code=None, message=f"no relay could take the message (tried: {tried})",
                      error_kind=SendErrorKind.CONNECTION)


def as_pipelined(transport: Transport) -> PipelinedTransport:
    """A pipelined transport as it is, or a plain one that sends at `begin`."""
    if isinstance(transport, PipelinedTransport):
        return transport
    return _SendAtBegin(transport)


class _SendAtBegin:
    """`begin` sends at once and `finish` hands the answers back in order."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._answers: deque[Answer] = deque()

    def send(self, message: OutgoingMessage) -> SendResult:
        return self._transport.send(message)

    def begin(self, message: OutgoingMessage) -> None:
        self._answers.append(Answer(self._transport.send(message), 0.0))

    def finish(self) -> Answer | None:
        return self._answers.popleft()

    def reset(self) -> None:
        self._answers.clear()

    def close(self) -> None:
        self._transport.close()
